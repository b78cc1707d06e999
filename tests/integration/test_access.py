"""Roles over Orthanc's users: every /courier/ route, unauthenticated and as each role."""
import requests

from factory import write_instances
from harness import Orthanc, storescu

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}


def secured(cluster, tmp_path):
    pacs = cluster.orthanc("pacs", start=False)
    dest = cluster.orthanc("dest")
    other = cluster.orthanc("other")
    node = Orthanc(tmp_path, "router", courier={
        "AllowedCallers": "Any",
        "Users": {"alice": {"Role": "admin"}, "bob": {"Role": "operator", "MayQuery": ["pacs"], "MaySendTo": ["dest"]},
                  "carol": {"Role": "viewer"}}},
        extra={"AuthenticationEnabled": True, "RegisteredUsers": USERS,
               "DicomModalities": {"pacs": pacs.as_modality(), "dest": dest.as_modality(), "other": other.as_modality()}})
    cluster.nodes.append(node)
    pacs.config["DicomModalities"] = {"router": node.as_modality()}
    pacs.start()
    node.start()
    return node, pacs


def call(node, method, path, user=None, **kwargs):
    auth = (user, USERS[user]) if user else None
    if method != "GET" and "json" not in kwargs:
        kwargs["json"] = {}
    return requests.request(method, node.url + path, auth=auth, timeout=30, **kwargs)


def test_every_route_needs_a_login_and_viewers_cannot_change_anything(cluster, tmp_path):
    node, _ = secured(cluster, tmp_path)
    document = call(node, "GET", "/courier/openapi.json", "carol").json()
    checked = 0
    for path, methods in document["paths"].items():
        concrete = (path.replace("{id}", "1").replace("{profile}", "p").replace("{action}", "cancel")
                    .replace("{name}", "results.csv"))
        for method, spec in methods.items():
            assert call(node, method.upper(), concrete).status_code == 401, (method, path)
            answer = call(node, method.upper(), concrete, "carol")
            if spec["x-courier-role"] == "internal":        # Orthanc's own calls only: refused unread to every client
                assert answer.status_code == 403 and answer.text == "", (method, path)
                assert call(node, method.upper(), concrete, "alice").status_code == 403
            elif spec["x-courier-role"] == "viewer":
                assert answer.status_code != 403, (method, path)
            else:
                assert answer.status_code == 403 and "needs the" in answer.json()["error"], (method, path, answer.text)
                assert call(node, method.upper(), concrete, "dave").status_code == 403      # unlisted: viewer
                checked += 1
    assert checked >= 10


def test_operator_rights_on_nodes_and_own_jobs(cluster, tmp_path):
    node, pacs = secured(cluster, tmp_path)
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 1, patient_id="PA"))
    query = {"Node": "pacs", "Level": "STUDY", "Filters": {"PatientID": "PA"}}
    assert call(node, "POST", "/courier/query", "bob", json=query).json()["Count"] == 1
    denied = call(node, "POST", "/courier/query", "bob", json=dict(query, Node="other"))
    assert denied.status_code == 403 and "may not query 'other'" in denied.json()["error"]
    to_other = call(node, "POST", "/courier/jobs", "bob", json={"Source": "pacs", "Destination": "other",
                                                               "Items": [{"PatientID": "PA"}]})
    assert to_other.status_code == 403 and "may not send to 'other'" in to_other.json()["error"]
    mine = call(node, "POST", "/courier/jobs", "bob", json={"Source": "pacs", "Destination": "dest",
                                                           "Items": [{"PatientID": "PA"}]}).json()
    assert mine["CreatedBy"] == "bob"
    theirs = call(node, "POST", "/courier/jobs", "alice", json={"Source": "pacs", "Destination": "other",
                                                               "Items": [{"PatientID": "PA"}]}).json()
    refused = call(node, "POST", f"/courier/jobs/{theirs['Id']}/cancel", "bob")
    assert refused.status_code == 403 and "belongs to alice" in refused.json()["error"]
    assert call(node, "POST", f"/courier/jobs/{mine['Id']}/pause", "bob").status_code == 200
    assert call(node, "POST", f"/courier/jobs/{mine['Id']}/cancel", "alice").status_code == 200   # an admin may
    entries = call(node, "GET", "/courier/audit", "carol", params={"action": "job-cancel"}).json()["entries"]
    assert [e["actor"] for e in entries] == ["alice"]


def test_subscriptions_are_changed_by_their_owner_or_an_admin_and_honour_the_node_rights(cluster, tmp_path):
    node, _ = secured(cluster, tmp_path)
    body = {"Source": "pacs", "Destination": "dest", "Every": "1h"}
    denied = call(node, "POST", "/courier/subscriptions", "bob", json=dict(body, Destination="other"))
    assert denied.status_code == 403 and "may not send to 'other'" in denied.json()["error"]
    theirs = call(node, "POST", "/courier/subscriptions", "alice", json=body).json()
    mine = call(node, "POST", "/courier/subscriptions", "bob", json=body).json()
    refused = call(node, "POST", f"/courier/subscriptions/{theirs['Id']}/pause", "bob")
    assert refused.status_code == 403 and "subscription 1 belongs to alice" in refused.json()["error"]
    assert call(node, "PUT", f"/courier/subscriptions/{theirs['Id']}", "bob", json={"Every": "2h"}).status_code == 403
    assert call(node, "DELETE", f"/courier/subscriptions/{theirs['Id']}", "bob").status_code == 403
    edited = call(node, "PUT", f"/courier/subscriptions/{mine['Id']}", "bob", json={"Every": "2h"})
    assert edited.status_code == 200 and edited.json()["Every"] == "2h", edited.text
    moved = call(node, "PUT", f"/courier/subscriptions/{mine['Id']}", "bob", json={"Every": "2h", "Destination": "other"})
    assert moved.status_code in (403, 409)
    assert call(node, "DELETE", f"/courier/subscriptions/{mine['Id']}", "alice").status_code == 200   # an admin may


def test_an_upload_is_added_to_and_ended_by_its_owner_or_an_admin_within_their_rights(cluster, tmp_path):
    node, _ = secured(cluster, tmp_path)
    data = write_instances(tmp_path / "u", 1, patient_id="UA")[0].read_bytes()
    theirs = call(node, "POST", "/courier/uploads", "alice").json()["Id"]
    headers = {"Content-Type": "application/dicom", "X-Courier-Filename": "a.dcm"}
    refused = call(node, "POST", f"/courier/uploads/{theirs}/files", "bob", data=data, headers=headers)
    assert refused.status_code == 403 and f"upload {theirs} belongs to alice" in refused.json()["error"]
    assert call(node, "POST", f"/courier/uploads/{theirs}/discard", "bob").status_code == 403
    mine = call(node, "POST", "/courier/uploads", "bob").json()["Id"]
    assert call(node, "POST", f"/courier/uploads/{mine}/files", "bob", data=data, headers=headers).status_code == 200
    denied = call(node, "POST", f"/courier/uploads/{mine}/send", "bob", json={"Destination": "other"})
    assert denied.status_code == 403 and "may not send to 'other'" in denied.json()["error"]
    assert call(node, "POST", f"/courier/uploads/{mine}/send", "bob", json={"Destination": "dest"}).status_code == 200


def test_only_admins_test_a_draft_configuration(cluster, tmp_path):
    node, _ = secured(cluster, tmp_path)
    draft = call(node, "GET", "/courier/config", "alice").json()["Document"]
    draft["Scripts"]["x.py"] = "import os\nos.system('touch /tmp/courier-operator-ran-this')\ndef match(t, c): return True\n"
    body = {"Tags": {"Modality": "CT"}, "Draft": draft}
    refused = call(node, "POST", "/courier/routes/test", "bob", json=body)
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert call(node, "POST", "/courier/routes/test", "bob", json={"Tags": {"Modality": "CT"}}).status_code == 200
    draft["Scripts"]["x.py"] = "def match(t, c): return True\n"
    assert call(node, "POST", "/courier/routes/test", "alice", json=body | {"Draft": draft}).status_code == 200
