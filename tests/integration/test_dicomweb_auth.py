"""DICOMweb servers that want a bearer token: a token server (OAuth2 client credentials, tokens of
3 s) and a reverse proxy in front of a real Orthanc that refuses requests without a valid token;
the router STOWs, QIDOs and WADOs through it, keeps working once the tokens expired, and says
401 when its token is wrong. A proxy that caps QIDO answers proves the pagination."""
import json

import pydicom
import requests

from factory import write_instances
from harness import storescu, wait_until
from web_auth import AuthProxy, TokenServer

FAST_RETRY = {"MaxAttempts": 50, "InitialDelaySeconds": 0.3, "Multiplier": 2, "MaxDelaySeconds": 1}
MODALITY = {"AET": "MODALITY", "Host": "127.0.0.1", "Port": 1}
SECRET = "client-secret-0123456789"


def router_for(cluster, proxy, authorization, dest, **node):
    return cluster.orthanc("router", dicomweb=True, courier={
        "Retry": FAST_RETRY, "Nodes": {"web": {"Authorization": authorization, **node}},
        "Routes": [{"Name": "to-web", "Destinations": ["web"], "Match": {"PatientID": "ROUTED"}}]},
        extra={"DicomModalities": {"modality": MODALITY, "dest": dest.as_modality()},
               "DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                            "Servers": {"web": {"Url": proxy.url + "/dicom-web/", "HttpHeaders": {"X-Site": "a"}}}}})


def job_done(node, job_id, timeout=60):
    return wait_until(lambda: (j := node.get(f"/courier/jobs/{job_id}"))["Status"] not in ("PENDING", "RUNNING") and j,
                      timeout, 0.3, what="the job to end")


def test_oauth2_tokens_for_stow_qido_and_wado_renewed_after_expiry(cluster, tmp_path):
    tokens = TokenServer("courier", SECRET, expires_in=3)
    web = cluster.orthanc("web", dicomweb=True)
    proxy = AuthProxy(web.url, tokens.valid)
    try:
        (tmp_path / "client-secret").write_text(SECRET)
        dest = cluster.orthanc("dest")
        node = router_for(cluster, proxy, {"TokenUrl": tokens.token_url, "ClientId": "courier", "Scope": "dicomweb",
                                           "ClientSecretFile": str(tmp_path / "client-secret"),
                                           "RefreshBeforeSeconds": 1}, dest)
        # STOW: an instance routed to the server
        routed = write_instances(tmp_path / "routed", 2, patient_id="ROUTED")
        storescu(node.dicom_port, routed, calling="MODALITY")
        wait_until(lambda: web.sop_uids() == {p.stem for p in routed}, 40, what="the routed instances at the server")
        assert proxy.forwarded("POST /dicom-web/studies") >= 1
        # WADO source: a study stored straight into the server's Orthanc
        study = write_instances(tmp_path / "src", 3, patient_id="PW", StudyDate="20240303")
        storescu(web.dicom_port, study)
        # tokens live 3 s: after 7 s the first ones expired and the router renewed its own
        wait_until(lambda: tokens.granted >= 3, 15, what="tokens renewed before they expired")
        first = tokens.requests[0]
        assert first["grant_type"] == "client_credentials" and first["scope"] == "dicomweb"
        found = node.post("/courier/query", {"Node": "web", "Level": "STUDY", "Filters": {"PatientID": "PW"}}).json()
        assert [a["PatientID"] for a in found["Answers"]] == ["PW"], found
        job = node.post("/courier/jobs", {"Source": "web", "Destination": "dest", "Items": [{"PatientID": "PW"}]}).json()
        done = job_done(node, job["Id"])
        assert done["Status"] == "SUCCESS" and dest.sop_uids() == {p.stem for p in study}
        assert proxy.forwarded("GET /dicom-web/studies/") >= 1          # WADO-RS through the proxy
        # the token never enters the configuration, its versions or Orthanc's listing
        issued = list(tokens.issued)
        texts = [json.dumps(node.get(path, **params)) for path, params in (
            ("/courier/config", {}), ("/courier/config/versions", {}), ("/courier/config/export", {}),
            ("/dicom-web/servers", {"expand": ""}), ("/courier/audit", {}))] + [node.log_tail(400)]
        assert not any(token in text or SECRET in text for token in issued for text in texts)
    finally:
        proxy.close()
        tokens.close()


def test_a_static_bearer_token_and_a_wrong_one_gives_401(cluster, tmp_path):
    web = cluster.orthanc("web", dicomweb=True)
    proxy = AuthProxy(web.url, lambda token: token == "good-static-token")
    try:
        (tmp_path / "token").write_text("good-static-token\n")
        dest = cluster.orthanc("dest")
        node = router_for(cluster, proxy, {"BearerTokenFile": str(tmp_path / "token")}, dest)
        routed = write_instances(tmp_path / "routed", 1, patient_id="ROUTED")
        storescu(node.dicom_port, routed, calling="MODALITY")
        wait_until(lambda: web.sop_uids() == {p.stem for p in routed}, 40, what="the routed instance at the server")
        assert node.post("/courier/nodes/web/echo").json()["Ok"] is True
        node.stop()
        (tmp_path / "token").write_text("wrong-token\n")
        node.start()
        more = write_instances(tmp_path / "more", 1, patient_id="ROUTED")
        storescu(node.dicom_port, more, calling="MODALITY")
        failed = wait_until(lambda: [t for t in node.get("/courier/tasks")["tasks"]
                                     if t["last_error"] and "401" in t["last_error"]], 40, what="a task failed with 401")
        assert "refused Courier's credentials (HTTP 401 Unauthorized)" in failed[0]["last_error"]
        assert "Courier.Nodes.web.Authorization" in failed[0]["last_error"]
        query = node.post("/courier/query", {"Node": "web", "Level": "STUDY", "Filters": {"PatientID": "ROUTED"}})
        assert "HTTP 401 Unauthorized" in query.text and "wrong-token" not in query.text
        echo = node.post("/courier/nodes/web/echo").json()
        assert echo["Ok"] is False and "401" in echo["Message"]
        assert proxy.refused() >= 2
    finally:
        proxy.close()


def test_qido_pages_through_a_server_that_caps_its_answers(cluster, tmp_path):
    web = cluster.orthanc("web", dicomweb=True)
    proxy = AuthProxy(web.url, lambda token: token == "paging-token", cap=2)
    try:
        (tmp_path / "token").write_text("paging-token")
        dest = cluster.orthanc("dest")
        node = router_for(cluster, proxy, {"BearerTokenFile": str(tmp_path / "token")}, dest, MaxResults=2)
        uids = set()
        for n in range(5):
            files = write_instances(tmp_path / f"s{n}", 1, patient_id=f"PG{n}", StudyDate="20240505")
            uids.add(str(pydicom.dcmread(files[0]).StudyInstanceUID))
            storescu(web.dicom_port, files)
        found = node.post("/courier/query", {"Node": "web", "Level": "STUDY",
                                             "Filters": {"StudyDate": "20240505"}}).json()
        assert {a["StudyInstanceUID"] for a in found["Answers"]} == uids and found["Splits"] == 0, found
        pages = [(args.get("offset"), args.get("limit")) for path, args, _ in proxy.qido if path.endswith("/studies")]
        assert pages[-3:] == [(["0"], ["2"]), (["2"], ["2"]), (["4"], ["2"])]
    finally:
        proxy.close()


def test_a_runtime_change_of_the_server_keeps_the_token_and_pseudonymized_sends_carry_it(cluster, tmp_path):
    tokens = TokenServer("courier", SECRET, expires_in=3600)         # no renewal during the test
    web = cluster.orthanc("web", dicomweb=True)
    proxy = AuthProxy(web.url, tokens.valid)
    try:
        (tmp_path / "client-secret").write_text(SECRET)
        (tmp_path / "key").write_text("pseudonymization-key-0123456789")
        dest = cluster.orthanc("dest")
        node = cluster.orthanc("router", dicomweb=True, courier={
            "Retry": FAST_RETRY, "Pseudonymization": {"p": {"SecretFile": str(tmp_path / "key")}},
            "Nodes": {"web": {"Authorization": {"TokenUrl": tokens.token_url, "ClientId": "courier",
                                                "ClientSecretFile": str(tmp_path / "client-secret")}}},
            "Routes": [{"Name": "pseudo", "Destinations": ["web"], "Pseudonymize": "p"}]},
            extra={"DicomModalities": {"modality": MODALITY, "dest": dest.as_modality()},
                   "DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                                "Servers": {"web": {"Url": proxy.url + "/dicom-web/", "HttpHeaders": {"X-Site": "a"}}}}})
        files = write_instances(tmp_path / "in", 2, patient_id="REAL")
        storescu(node.dicom_port, files, calling="MODALITY")
        wait_until(lambda: len(web.sop_uids()) == 2, 40, what="pseudonymized instances at the server (Courier's STOW)")
        assert not web.sop_uids() & {p.stem for p in files}             # new UIDs: Courier's own bytes
        before = tokens.granted
        entry = {"Url": proxy.url + "/dicom-web/", "HttpHeaders": {"X-Site": "(kept in orthanc.json)"}, "Timeout": 30}
        changed = requests.put(node.url + "/courier/config/dicomweb/web", json={"Entry": entry}, timeout=30)
        assert changed.status_code == 200, changed.text
        assert node.get("/dicom-web/servers", expand="")["web"]["Timeout"] == 30
        found = node.post("/courier/query", {"Node": "web", "Level": "STUDY", "Filters": {}})
        assert found.status_code == 200 and found.json()["Count"] >= 1, found.text
        assert tokens.granted == before                                  # the same token, kept by the registry sync
    finally:
        proxy.close()
        tokens.close()
