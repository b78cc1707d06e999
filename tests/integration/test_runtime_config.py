"""Runtime configuration end to end: routes and nodes changed without a restart, versions,
restore, what survives a restart, and errors that name the JSON path."""
import json

import requests

from factory import write_instances
from harness import storescu, wait_until

FAST_RETRY = {"MaxAttempts": 50, "InitialDelaySeconds": 0.3, "Multiplier": 2, "MaxDelaySeconds": 1}
MODALITY = {"AET": "MODALITY", "Host": "127.0.0.1", "Port": 1}


def put(node, path, body):
    return requests.put(node.url + path, json=body, timeout=30)


def router(cluster, a, b, **extra):
    return cluster.orthanc("router", courier={"Retry": FAST_RETRY, "Routes": [
        {"Name": "r", "Match": {"Modality": "CT"}, "Destinations": ["a"]}]},
        extra={"DicomModalities": {"modality": MODALITY, "a": a.as_modality(), "b": b.as_modality()}, **extra})


def test_a_route_changed_at_runtime_restored_and_kept_across_restarts(cluster, tmp_path):
    a, b = cluster.orthanc("a"), cluster.orthanc("b")
    node = router(cluster, a, b)
    first = node.get("/courier/config")
    assert first["Version"] == 1
    assert node.get("/courier/config/versions")["Versions"][0]["Source"] == "orthanc.json"

    answer = put(node, "/courier/config/routes/r", {"Entry": {"Match": {"Modality": "CT"}, "Destinations": ["b"]},
                                                     "Base": 1, "Comment": "CT now goes to b"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["Version"] == 2
    assert {"Path": "Courier.Routes.r.Destinations", "Change": "changed", "Old": ["a"], "New": ["b"]} in answer.json()["Changes"]
    one = write_instances(tmp_path / "one", 1, modality="CT")
    storescu(node.dicom_port, one, calling="MODALITY")
    wait_until(lambda: b.sop_uids() == {one[0].stem}, 30, what="the instance at b, by the edited route")
    assert a.sop_uids() == set()

    versions = node.get("/courier/config/versions")["Versions"]
    assert [(v["Version"], v["Source"], v["Comment"].split(" by router")[0]) for v in versions][:2] == [
        (2, "api", "CT now goes to b"), (1, "orthanc.json", "read from orthanc.json")]
    assert node.get("/courier/config/versions/2/diff")["Changes"][0]["Path"] == "Courier.Routes.r.Destinations"
    audit = node.get("/courier/audit", action="config-changed")
    assert any(e["detail"].get("version") == 2 and "changed Courier.Routes.r.Destinations" in e["detail"]["changes"]
               for e in audit["entries"]), audit

    restored = node.post("/courier/config/versions/1/restore", {"Base": 2})
    assert restored.status_code == 200, restored.text
    assert restored.json()["Version"] == 3
    two = write_instances(tmp_path / "two", 1, modality="CT")
    storescu(node.dicom_port, two, calling="MODALITY")
    wait_until(lambda: a.sop_uids() == {two[0].stem}, 30, what="the instance at a, by the restored route")

    put(node, "/courier/config/routes/r", {"Entry": {"Match": {"Modality": "CT"}, "Destinations": ["b"]}})
    node.stop(kill=True)                      # the latest version is in the store, not in memory
    node.start()
    assert node.get("/courier/config")["Version"] == 4
    three = write_instances(tmp_path / "three", 1, modality="CT")
    storescu(node.dicom_port, three, calling="MODALITY")
    wait_until(lambda: three[0].stem in b.sop_uids(), 30, what="after kill -9, the version in force still routes to b")

    node.stop()                               # orthanc.json edited: it becomes the next version
    node.config["Courier"]["Routes"][0]["Match"] = {"Modality": "MR"}
    node.start()
    latest = node.get("/courier/config/versions")["Versions"][0]
    assert (latest["Version"], latest["Source"]) == (5, "orthanc.json")
    assert node.get("/courier/config")["Document"]["Courier"]["Routes"][0]["Match"] == {"Modality": "MR"}


def test_a_bad_change_is_refused_naming_the_json_path_and_changes_nothing(cluster):
    a, b = cluster.orthanc("a"), cluster.orthanc("b")
    node = router(cluster, a, b)
    bad = put(node, "/courier/config/routes/r", {"Entry": {"Destinations": ["nowhere"]}})
    assert bad.status_code == 400
    assert "Courier.Routes[0].Destinations[0]: no destination named 'nowhere'" in bad.json()["error"]
    wrong = put(node, "/courier/config/routes/r", {"Entry": {"Trigger": "Sometimes", "Destinations": ["a"]}})
    assert "Courier.Routes[0].Trigger: unknown trigger 'Sometimes'" in wrong.json()["error"]
    secret = put(node, "/courier/config/peers/p", {"Entry": {"Url": "http://127.0.0.1:1/", "Username": "u",
                                                             "Password": "literal"}})
    assert secret.status_code == 400 and "OrthancPeers.p.Password" in secret.json()["error"]
    script = put(node, "/courier/config/scripts/rule.py", {"Entry": "def match(tags, context)\n    return True\n"})
    assert script.status_code == 400 and "Scripts.rule.py" in script.json()["error"] and "line 1" in script.json()["error"]
    restart_only = put(node, "/courier/config", {"Document": {"Courier": {"Workers": 1}}})
    assert restart_only.status_code == 400 and "Courier.Workers" in restart_only.json()["error"]
    assert node.get("/courier/config")["Version"] == 1

    ok = put(node, "/courier/config/routes/r", {"Entry": {"Destinations": ["b"]}, "Base": 1})
    assert ok.status_code == 200
    stale = put(node, "/courier/config/routes/r", {"Entry": {"Destinations": ["a"]}, "Base": 1})
    assert stale.status_code == 409 and "version 2" in stale.json()["error"]
    assert node.get("/courier/config")["Document"]["Courier"]["Routes"][0]["Destinations"] == ["b"]


def test_the_rule_tester_runs_a_draft_with_its_script(cluster):
    a, b = cluster.orthanc("a"), cluster.orthanc("b")
    node = router(cluster, a, b)
    draft = node.get("/courier/config")["Document"]
    draft["Scripts"]["big.py"] = "def match(tags, context):\n    return int(tags.get('SeriesNumber') or 0) > 5\n"
    draft["Courier"]["Routes"].append({"Name": "big", "Condition": "big.py", "Destinations": ["b"]})
    answer = node.post("/courier/routes/test", {"Tags": {"Modality": "MR", "SeriesNumber": "9"}, "Draft": draft})
    assert answer.status_code == 200, answer.text
    assert answer.json()["Fired"] == ["big"]
    small = node.post("/courier/routes/test", {"Tags": {"Modality": "MR", "SeriesNumber": "2"}, "Draft": draft})
    assert small.json()["Fired"] == []
    assert node.post("/courier/routes/test", {"Tags": {"Modality": "MR", "SeriesNumber": "9"}}).json()["Fired"] == []
    saved = put(node, "/courier/config", {"Document": draft})
    assert saved.status_code == 200, saved.text
    assert node.post("/courier/routes/test", {"Tags": {"Modality": "MR", "SeriesNumber": "9"}}).json()["Fired"] == ["big"]


def test_a_node_added_at_runtime_is_orthancs_too_and_survives_a_restart(cluster, tmp_path):
    a, b = cluster.orthanc("a"), cluster.orthanc("b")
    node = router(cluster, a, b)
    late = cluster.orthanc("late")
    answer = put(node, "/courier/config/modalities/late", {"Entry": late.as_modality()})
    assert answer.status_code == 200, answer.text
    assert "late" in node.get("/modalities")
    echo = node.post("/courier/nodes/late/echo")
    assert echo.status_code == 200 and echo.json()["Ok"] is True, echo.text
    put(node, "/courier/config/routes/r", {"Entry": {"Match": {"Modality": "CT"}, "Destinations": ["late"]}})
    files = write_instances(tmp_path / "ct", 2, modality="CT")
    storescu(node.dicom_port, files, calling="MODALITY")
    wait_until(lambda: late.sop_uids() == {f.stem for f in files}, 30, what="the instances at the node added at runtime")

    removed = requests.delete(node.url + "/courier/config/modalities/b", timeout=10)
    assert removed.status_code == 200, removed.text
    assert "b" not in node.get("/modalities")
    node.stop(kill=True)
    node.start()                              # Orthanc reads orthanc.json's modalities; Courier sets its version's
    wait_until(lambda: "late" in node.get("/modalities") and "b" not in node.get("/modalities"), 10,
               what="Orthanc's registry as the version in force says")
    export = requests.get(node.url + "/courier/config/export", timeout=10)
    assert "attachment" in export.headers["Content-Disposition"]
    exported = json.loads(export.text)
    assert exported["DicomModalities"]["late"] == late.as_modality() and "b" not in exported["DicomModalities"]
    assert exported["Courier"]["Routes"][0]["Destinations"] == ["late"]


def test_a_node_with_unfinished_tasks_cannot_be_removed(cluster, tmp_path):
    a, b = cluster.orthanc("a"), cluster.orthanc("b")
    node = router(cluster, a, b)
    put(node, "/courier/config/modalities/down", {"Entry": {"AET": "DOWN", "Host": "127.0.0.1", "Port": 1}})
    put(node, "/courier/config/routes/r", {"Entry": {"Destinations": ["down"]}})
    storescu(node.dicom_port, write_instances(tmp_path / "x", 1, modality="CT"), calling="MODALITY")
    wait_until(lambda: node.get("/courier/tasks")["tasks"], 20, what="a task to the node that is down")
    put(node, "/courier/config/routes/r", {"Entry": {"Destinations": ["a"]}})
    refused = requests.delete(node.url + "/courier/config/modalities/down", timeout=10)
    assert refused.status_code == 400
    assert "DicomModalities.down: 1 unfinished task(s) still use 'down'" in refused.json()["error"]
    assert "down" in node.get("/modalities")
    task = node.get("/courier/tasks")["tasks"][0]
    assert node.post(f"/courier/tasks/{task['id']}/cancel").status_code == 200
    assert requests.delete(node.url + "/courier/config/modalities/down", timeout=10).status_code == 200
    assert "down" not in node.get("/modalities")


def test_a_dicomweb_server_added_at_runtime_takes_its_password_from_the_environment(cluster, tmp_path, monkeypatch):
    web = cluster.orthanc("web", dicomweb=True, extra={"AuthenticationEnabled": True, "RegisteredUsers": {"w": "wpass-123"}})
    monkeypatch.setenv("WEB_PASSWORD", "wpass-123")
    node = cluster.orthanc("router", dicomweb=True, courier={"Retry": FAST_RETRY, "AllowedCallers": "Any", "Routes": []})
    entry = {"Url": web.url + "/dicom-web/", "Username": "w", "PasswordEnv": "WEB_PASSWORD"}
    answer = put(node, "/courier/config/dicomweb/web", {"Entry": entry})
    assert answer.status_code == 200, answer.text
    assert "web" in node.get("/dicom-web/servers")
    answer = put(node, "/courier/config/routes/all", {"Entry": {"Destinations": ["web"]}})
    assert answer.status_code == 200, answer.text
    files = write_instances(tmp_path / "in", 2)
    storescu(node.dicom_port, files)
    wait_until(lambda: {i["MainDicomTags"]["SOPInstanceUID"] for i in requests.get(
        web.url + "/instances", params={"expand": ""}, auth=("w", "wpass-123"), timeout=10).json()} == {f.stem for f in files},
        30, what="the instances at the DICOMweb server, with its password")
    for path in ("/courier/config", "/courier/config/export", "/courier/config/versions/2", "/courier/audit"):
        assert "wpass-123" not in requests.get(node.url + path, timeout=10).text, path
    missing = put(node, "/courier/config/dicomweb/other", {"Entry": {"Url": web.url + "/dicom-web/", "PasswordEnv": "NOPE"}})
    assert missing.status_code == 400 and "DicomWeb.Servers.other.PasswordEnv" in missing.json()["error"]


def test_a_disabled_destination_holds_its_tasks_until_it_is_enabled(cluster, tmp_path):
    import time
    a, b = cluster.orthanc("a"), cluster.orthanc("b")
    node = router(cluster, a, b)
    assert put(node, "/courier/config/node-settings/a", {"Entry": {"Enabled": False}}).status_code == 200
    files = write_instances(tmp_path / "ct", 2, modality="CT")
    storescu(node.dicom_port, files, calling="MODALITY")
    wait_until(lambda: node.get("/courier/tasks")["tasks"], 20, what="the tasks")
    time.sleep(2)                                    # time enough to be sent, were it enabled
    assert a.sop_uids() == set()
    assert {t["state"] for t in node.get("/courier/tasks")["tasks"]} == {"PENDING"}
    # the change follower wrote each Instance task's manifest with it: never claimed, already listed
    assert [t["expected"] for t in node.get("/courier/tasks")["tasks"]] == [1, 1]
    assert put(node, "/courier/config/node-settings/a", {"Entry": {"Enabled": True}}).status_code == 200
    wait_until(lambda: a.sop_uids() == {f.stem for f in files}, 30, what="the tasks sent once a is enabled again")
    disabled_route = put(node, "/courier/config/routes/r", {"Entry": {"Enabled": False, "Destinations": ["a"]}})
    assert disabled_route.status_code == 200
    assert node.get("/courier/routes") == []
    assert node.get("/courier/config")["Document"]["Courier"]["Routes"][0]["Enabled"] is False


def test_a_node_orthanc_refuses_changes_nothing_and_list_forms_are_kept(cluster):
    a, b = cluster.orthanc("a"), cluster.orthanc("b")
    node = router(cluster, a, b)
    before = node.get("/modalities")
    refused = put(node, "/courier/config/modalities/odd", {"Entry": {"AET": "ODD", "Host": "127.0.0.1", "Port": 104,
                                                                      "Manufacturer": "NoSuchVendor"}})
    assert refused.status_code == 400
    assert "DicomModalities.odd: Orthanc refused to set the node" in refused.json()["error"], refused.text
    assert node.get("/modalities") == before and node.get("/courier/config")["Version"] == 1
    listed = put(node, "/courier/config/modalities/listed", {"Entry": ["LISTED", "127.0.0.1", a.dicom_port]})
    assert listed.status_code == 200, listed.text
    assert node.get("/courier/config")["Document"]["DicomModalities"]["listed"] == ["LISTED", "127.0.0.1", a.dicom_port]
    assert node.get("/modalities/listed/configuration")["Port"] == a.dicom_port
    port = put(node, "/courier/config/modalities/p", {"Entry": {"AET": "P", "Host": "h", "Port": "p"}})
    assert port.status_code == 400 and "DicomModalities.p.Port: expected a port number" in port.json()["error"]
    typo = put(node, "/courier/config", {"Document": {**node.get("/courier/config")["Document"], "DicomWeb": {"Server": {}}}})
    assert typo.status_code == 400 and "DicomWeb.Server: only DicomWeb.Servers changes at runtime" in typo.json()["error"]
    bad_id = put(node, "/courier/config/modalities/a..b%2Fc", {"Entry": ["X", "127.0.0.1", 104]})
    assert bad_id.status_code in (400, 404)
