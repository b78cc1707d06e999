"""Transfer jobs: C-MOVE from a PACS through Courier to a destination, counted per SOP UID."""
import time

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from factory import make_instance, write_instances
from harness import free_port, storescu, wait_until


def setup(cluster, tmp_path, pacs=None, pacs_allows=None, **courier):
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", start=False, courier={
        "AllowedCallers": "KnownModalities", "Retry": {"MaxAttempts": 2, "InitialDelaySeconds": 0.2},
        "Folders": {"folder": {"Path": str(tmp_path / "routed")}},
        "Routes": [{"Name": "everything", "Destinations": ["folder"]}], **courier},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    if pacs is None:
        pacs = cluster.orthanc("pacs", start=False)
        pacs.config["DicomModalities"] = {"router": {**node.as_modality(), **(pacs_allows or {})}}
        pacs.start()
        node.config["DicomModalities"]["pacs"] = pacs.as_modality()
    else:
        node.config["DicomModalities"]["pacs"] = pacs
    node.start()
    return node, dest, pacs


def job_done(node, job_id, timeout=60):
    return wait_until(lambda: (j := node.get(f"/courier/jobs/{job_id}"))["Status"] not in ("PENDING", "RUNNING") and j,
                      timeout, 0.2, what=f"job {job_id} to end")


def test_c_move_job_transfers_counts_and_cleans_up(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path)
    first = write_instances(tmp_path / "s1", 3, patient_id="P1", StudyDate="20240105")
    second = write_instances(tmp_path / "s2", 2, patient_id="P1", StudyDate="20240210", modality="MR")
    other = write_instances(tmp_path / "s3", 1, patient_id="P2")
    storescu(pacs.dicom_port, first + second + other)
    created = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "P1"}]})
    assert created.status_code == 200, created.text
    job = job_done(node, created.json()["Id"])
    assert job["Status"] == "SUCCESS" and job["Tasks"]["Total"] == 2 and job["Instances"] == {"Expected": 5, "Delivered": 5}
    assert dest.sop_uids() == {p.stem for p in first + second}
    wait_until(lambda: node.instances() == [], 10, what="fetched studies removed from Courier")
    assert not (tmp_path / "routed").exists()            # the routes left the fetched studies alone
    assert job["Bytes"] > 0 and job["CreatedBy"] == "anonymous"
    assert [e["action"] for e in node.get("/courier/audit", route=f"job-{job['Id']}")["entries"]][-1] == "job-created"


def test_pseudonymized_job_by_accession_number(cluster, tmp_path):
    (tmp_path / "key").write_text("job-secret-0123456789")
    node, dest, pacs = setup(cluster, tmp_path, Pseudonymization={"trial": {"SecretFile": str(tmp_path / "key")}})
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 2, patient_id="P9", patient_name="Doe^John",
                                              AccessionNumber="ACC-77"))
    no_profile = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Trial": {"ProtocolID": "X"},
                                             "Items": [{"AccessionNumber": "ACC-77"}]})
    assert no_profile.status_code == 400 and "set Pseudonymize" in no_profile.json()["error"]
    created = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Pseudonymize": "trial",
                                          "Trial": {"ProtocolID": "P-42", "SiteName": "Site B"},
                                          "Items": [{"AccessionNumber": "ACC-77"}]}).json()
    assert created["Trial"] == {"ClinicalTrialProtocolID": "P-42", "ClinicalTrialSiteName": "Site B"}
    assert job_done(node, created["Id"])["Status"] == "SUCCESS"
    tags = [dest.get(f"/instances/{i}/simplified-tags") for i in dest.instances()]
    assert len(tags) == 2 and all(t["PatientID"] != "P9" and "Doe" not in t["PatientName"] for t in tags)
    assert {(t["ClinicalTrialProtocolID"], t["ClinicalTrialSiteName"], t["ClinicalTrialSubjectID"] == t["PatientID"])
            for t in tags} == {("P-42", "Site B", True)}


def test_bad_job_requests_name_the_field(cluster, tmp_path):
    node, _, _ = setup(cluster, tmp_path)
    for body, status, words in [({"Source": "nowhere", "Destination": "dest", "Items": [{"PatientID": "x"}]}, 400, "Source:"),
                                ({"Source": "pacs", "Destination": "nope", "Items": [{"PatientID": "x"}]}, 400, "Destination:"),
                                ({"Source": "pacs", "Destination": "dest", "Items": [{"Modality": "CT"}]}, 400, "Items[0]"),
                                ({"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "absent"}]}, 404,
                                 "holds no study")]:
        answer = node.post("/courier/jobs", body)
        assert answer.status_code == status and words in answer.json()["error"], answer.text


def qr_scp(title, port, on_find, on_move):
    """A pynetdicom query/retrieve SCP (C-FIND, C-MOVE of CT instances) on loopback."""
    ae = AE(ae_title=title)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_supported_context(Verification)
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    return ae.start_server(("127.0.0.1", port), block=False,
                           evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_MOVE, on_move)])


def find_handler(instances):
    """A C-FIND handler listing one study at STUDY level and every instance at IMAGE level."""
    def on_find(event):
        level = event.identifier.QueryRetrieveLevel
        for ds in instances if level == "IMAGE" else instances[:1]:
            answer = Dataset()
            answer.QueryRetrieveLevel = level
            answer.PatientID, answer.StudyInstanceUID = ds.PatientID, ds.StudyInstanceUID
            answer.StudyDate, answer.PatientName = ds.StudyDate, ds.PatientName
            if level == "IMAGE":
                answer.SeriesInstanceUID, answer.SOPInstanceUID = ds.SeriesInstanceUID, ds.SOPInstanceUID
            yield 0xFF00, answer
    return on_find


def lossy_pacs(port, router_port, instances):
    """A Q/R SCP that lists every instance at IMAGE level but, on C-MOVE, sends all but the last
    and still answers success: the failure ADIT users report."""
    on_find = find_handler(instances)

    def on_move(event):
        yield "127.0.0.1", router_port
        yield len(instances) - 1
        for ds in instances[:-1]:
            yield 0xFF00, ds
    return qr_scp("LOSSY", port, on_find, on_move)


def test_a_pacs_that_loses_an_image_while_reporting_success_gives_warning(cluster, tmp_path):
    port = free_port()
    study = pydicom.uid.generate_uid()
    instances = [make_instance(patient_id="P5", study_uid=study, instance_number=n) for n in range(1, 4)]
    node, dest, _ = setup(cluster, tmp_path, pacs={"AET": "LOSSY", "Host": "127.0.0.1", "Port": port})
    server = lossy_pacs(port, node.dicom_port, instances)
    try:
        created = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                              "Items": [{"StudyInstanceUID": study}]}).json()
        job = job_done(node, created["Id"])
        assert job["Status"] == "WARNING" and job["Instances"] == {"Expected": 3, "Delivered": 2}
        task = node.get(f"/courier/tasks/{node.get('/courier/jobs/' + str(created['Id']))['TaskList'][0]['id']}")
        assert task["state"] == "WARNING" and task["missing"] == [str(instances[-1].SOPInstanceUID)]
        assert "not received from pacs (C-MOVE)" in task["last_error"]
        assert dest.sop_uids() == {str(ds.SOPInstanceUID) for ds in instances[:-1]}
    finally:
        server.shutdown()


def slow_pacs(port, router_port, instances, seconds_per_instance, sent):
    on_find = find_handler(instances)

    def on_move(event):
        yield "127.0.0.1", router_port
        yield len(instances)
        for ds in instances:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            time.sleep(seconds_per_instance)
            sent.append(ds.SOPInstanceUID)
            yield 0xFF00, ds
    return qr_scp("SLOW", port, on_find, on_move)


def test_cancel_takes_effect_during_a_slow_c_move(cluster, tmp_path):
    port = free_port()
    study = pydicom.uid.generate_uid()
    instances = [make_instance(patient_id="P6", study_uid=study, instance_number=n) for n in range(1, 31)]
    node, dest, _ = setup(cluster, tmp_path, pacs={"AET": "SLOW", "Host": "127.0.0.1", "Port": port})
    sent: list = []
    server = slow_pacs(port, node.dicom_port, instances, 0.5, sent)
    try:
        job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"StudyInstanceUID": study}]}).json()
        wait_until(lambda: len(sent) >= 2, 20, what="the transfer under way")
        assert node.post(f"/courier/jobs/{job['Id']}/cancel").json()["Status"] == "CANCELED"
        cancelled_at = len(sent)
        task_id = node.get(f"/courier/jobs/{job['Id']}")["TaskList"][0]["id"]
        wait_until(lambda: node.get(f"/courier/tasks/{task_id}")["owner"] is None or
                   node.get(f"/courier/tasks/{task_id}")["state"] == "CANCELED", 10, what="the task cancelled")
        time.sleep(5)                                 # had it gone on, the PACS would have sent 10 more
        assert len(sent) <= cancelled_at + 5, (cancelled_at, len(sent))   # it stopped within seconds
        assert dest.instances() == []                 # nothing of a cancelled job is delivered
        assert node.get(f"/courier/tasks/{task_id}")["state"] == "CANCELED"
    finally:
        server.shutdown()


def test_kill_9_during_a_job_then_restart_completes_it(cluster, tmp_path):
    port = free_port()
    study = pydicom.uid.generate_uid()
    instances = [make_instance(patient_id="P8", study_uid=study, instance_number=n) for n in range(1, 13)]
    node, dest, _ = setup(cluster, tmp_path, pacs={"AET": "SLOW", "Host": "127.0.0.1", "Port": port},
                          HeartbeatTimeoutSeconds=2)
    sent: list = []
    server = slow_pacs(port, node.dicom_port, instances, 0.2, sent)
    try:
        job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"StudyInstanceUID": study}]}).json()
        wait_until(lambda: len(sent) >= 3, 20, what="the transfer under way")
        node.stop(kill=True)
        node.start()
        done = job_done(node, job["Id"], timeout=90)
        assert done["Status"] == "SUCCESS" and done["Instances"] == {"Expected": 12, "Delivered": 12}
        assert dest.sop_uids() == {str(ds.SOPInstanceUID) for ds in instances}
        assert node.get("/courier/audit", action="task-requeued")["total"] >= 1
    finally:
        server.shutdown()


def closed_window_now():
    """A one-hour window three days away: certainly closed now."""
    import datetime
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[(datetime.datetime.now().weekday() + 3) % 7]
    return f"{day} 00:00-01:00"


def test_a_time_window_holds_the_job_and_says_so(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path, Nodes={"pacs": {"Windows": [closed_window_now()]}})
    files = write_instances(tmp_path / "s", 2, patient_id="P3")
    storescu(pacs.dicom_port, files)
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "P3"}]}).json()
    assert job["Status"] == "WAITING_FOR_WINDOW" and job["NextWindow"].endswith("T00:00")
    time.sleep(3)
    held = node.get(f"/courier/jobs/{job['Id']}")
    assert held["Status"] == "WAITING_FOR_WINDOW" and held["TaskList"][0]["attempts"] == 0
    assert dest.instances() == [] and node.instances() == []          # nothing was even fetched


def test_pause_resume_and_priority(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path, Nodes={"pacs": {"Windows": [closed_window_now()]}})
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 1, patient_id="P4"))
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "P4"}]}).json()
    assert node.post(f"/courier/jobs/{job['Id']}/pause").json()["Status"] == "PAUSED"
    assert node.get("/courier/jobs")["jobs"][0]["Status"] == "PAUSED"
    assert node.post(f"/courier/jobs/{job['Id']}/priority", {"Urgent": True}).json()["Urgent"] is True
    assert node.get(f"/courier/jobs/{job['Id']}")["TaskList"][0]["priority"] == 100
    assert node.post(f"/courier/jobs/{job['Id']}/priority", {"Urgent": "yes"}).status_code == 400
    assert node.post(f"/courier/jobs/{job['Id']}/resume").json()["Status"] == "WAITING_FOR_WINDOW"
    assert node.post(f"/courier/jobs/{job['Id']}/explode").status_code == 404
    assert node.post(f"/courier/jobs/{job['Id']}/cancel").json()["Status"] == "CANCELED"
    actions = [e["action"] for e in node.get("/courier/audit", route=f"job-{job['Id']}")["entries"]]
    assert actions[:4] == ["job-cancel", "job-resume", "job-urgent", "job-pause"]


def test_job_into_an_encrypted_7z_archive(cluster, tmp_path):
    import py7zr
    import pytest
    (tmp_path / "key").write_text("job-secret-0123456789")
    archives = tmp_path / "archives"
    node, dest, pacs = setup(cluster, tmp_path, Archives={"export": {"Path": str(archives)}},
                             Pseudonymization={"trial": {"SecretFile": str(tmp_path / "key")}})
    files = write_instances(tmp_path / "s", 3, patient_id="P7", patient_name="Doe^Jane")
    storescu(pacs.dicom_port, files)
    answer = node.post("/courier/jobs", {"Source": "pacs", "Destination": "export", "Items": [{"PatientID": "P7"}]})
    assert answer.status_code == 400 and "ArchivePassword: required" in answer.json()["error"]
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "export", "Pseudonymize": "trial",
                                      "ArchivePassword": "correct horse battery", "Items": [{"PatientID": "P7"}]}).json()
    assert job_done(node, job["Id"])["Status"] == "SUCCESS"
    written = list((archives / f"job-{job['Id']}").glob("*.7z"))
    assert len(written) == 1 and not list(archives.rglob(".courier-*"))
    assert b"Doe" not in written[0].read_bytes() and b".dcm" not in written[0].read_bytes()   # names encrypted too
    with py7zr.SevenZipFile(written[0], "r", password="correct horse battery") as archive:
        archive.extractall(path=tmp_path / "opened")
    datasets = [pydicom.dcmread(p) for p in (tmp_path / "opened").rglob("*.dcm")]
    assert len(datasets) == 3
    assert all(ds.PatientID != "P7" and ds.PatientIdentityRemoved == "YES" for ds in datasets)
    for wrong in ("wrong password", None):
        with pytest.raises(Exception):  # noqa: B017 - a wrong key's error depends on the garbage decrypted (TypeError, Bad7zFile...)
            with py7zr.SevenZipFile(written[0], "r", password=wrong) as archive:
                archive.extractall(path=tmp_path / "refused")
    assert not list(tmp_path.glob("refused/**/*.dcm"))        # nothing readable came out
    import requests
    for path in ("/courier/jobs", f"/courier/jobs/{job['Id']}", "/courier/audit", "/courier/status"):
        assert "correct horse" not in requests.get(node.url + path, timeout=10).text
    assert "correct horse" not in node.log_path.read_text()


def test_c_get_job(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path, pacs_allows={"AllowMove": False},   # only C-GET can work
                             Nodes={"pacs": {"Capabilities": ["C-ECHO", "C-FIND", "C-GET"], "RetrieveMethod": "C-GET"}})
    files = write_instances(tmp_path / "s", 3, patient_id="PG")
    storescu(pacs.dicom_port, files)
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "PG"}]}).json()
    done = job_done(node, job["Id"])
    assert done["Status"] == "SUCCESS" and done["Instances"] == {"Expected": 3, "Delivered": 3}
    assert dest.sop_uids() == {p.stem for p in files}
    wait_until(lambda: node.instances() == [], 10, what="fetched study removed")


def test_the_same_pacs_refuses_c_move_when_not_allowed(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path, pacs_allows={"AllowMove": False})
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 1, patient_id="PM"))
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "PM"}]}).json()
    done = job_done(node, job["Id"])
    assert done["Status"] == "FAILURE" and "C-MOVE" in node.get(f"/courier/jobs/{job['Id']}")["TaskList"][0]["last_error"]


def test_wado_rs_job_and_qido_query_from_a_dicomweb_server(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    web = cluster.orthanc("websrc", dicomweb=True)
    node = cluster.orthanc("router", dicomweb=True, courier={"AllowedCallers": "Any"},
                           extra={"DicomModalities": {"dest": dest.as_modality()},
                                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                                               "Servers": {"web": [web.url + "/dicom-web/"]}}})
    files = write_instances(tmp_path / "s", 3, patient_id="PW", patient_name="Doe^Wendy", StudyDate="20240303")
    storescu(web.dicom_port, files + write_instances(tmp_path / "o", 1, patient_id="PX", StudyDate="20240404"))
    found = node.post("/courier/query", {"Node": "web", "Level": "STUDY",
                                         "Filters": {"PatientName": "doe*", "StudyDate": "20240301-20240331"}}).json()
    assert [(a["PatientID"], a["PatientName"], a["StudyDate"]) for a in found["Answers"]] == [("PW", "Doe^Wendy", "20240303")]
    job = node.post("/courier/jobs", {"Source": "web", "Destination": "dest", "Items": [{"PatientID": "PW"}]}).json()
    done = job_done(node, job["Id"])
    assert done["Status"] == "SUCCESS" and done["Instances"] == {"Expected": 3, "Delivered": 3}
    assert dest.sop_uids() == {p.stem for p in files}
    assert any("ReceivedInstancesCount" in (j.get("Content") or {}) for j in node.get("/jobs", expand=""))  # WADO-RS job


def test_direct_c_move_from_source_to_destination(cluster, tmp_path):
    dest = cluster.orthanc("dest", start=False)
    pacs = cluster.orthanc("pacs", start=False)
    (tmp_path / "key").write_text("direct-secret-0123456789")
    node = cluster.orthanc("router", start=False, courier={
        "AllowedCallers": "Any", "Nodes": {"pacs": {"DirectMoveTo": ["dest"]}},
        "Pseudonymization": {"p": {"SecretFile": str(tmp_path / "key")}}},
        extra={"DicomModalities": {"dest": dest.as_modality(), "pacs": pacs.as_modality()}})
    pacs.config["DicomModalities"] = {"router": node.as_modality(), "dest": dest.as_modality()}
    dest.config["DicomModalities"] = {"router": node.as_modality()}
    for n in (pacs, dest, node):
        n.start()
    files = write_instances(tmp_path / "s", 3, patient_id="PD")
    storescu(pacs.dicom_port, files)
    changes_before = node.get("/changes", last="")["Last"]
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "PD"}]}).json()
    done = job_done(node, job["Id"])
    assert done["Status"] == "SUCCESS" and done["Instances"] == {"Expected": 3, "Delivered": 3}
    assert done["Bytes"] is None                 # unknown, not 0: the instances never passed through Courier
    assert dest.sop_uids() == {p.stem for p in files}
    assert node.get("/changes", last="")["Last"] == changes_before      # nothing passed through Courier's Orthanc
    # with pseudonymization the data must pass through Courier: no direct move then
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Pseudonymize": "p",
                                      "Items": [{"PatientID": "PD"}]}).json()
    assert job_done(node, job["Id"])["Status"] == "SUCCESS"
    assert node.get("/changes", last="")["Last"] > changes_before and len(dest.instances()) == 6


def test_series_filters_transfer_only_matching_series(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path)
    study = pydicom.uid.generate_uid()
    ct = write_instances(tmp_path / "ct", 2, patient_id="PS", study_uid=study, modality="CT")
    mr = write_instances(tmp_path / "mr", 3, patient_id="PS", study_uid=study, modality="MR", SeriesDescription="T1 AX")
    storescu(pacs.dicom_port, ct + mr)
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                      "Items": [{"PatientID": "PS", "Modality": "MR"}]}).json()
    done = job_done(node, job["Id"])
    assert done["Status"] == "SUCCESS" and done["Tasks"]["Total"] == 1 and done["Instances"]["Delivered"] == 3
    assert dest.sop_uids() == {p.stem for p in mr}
    assert node.get(f"/courier/jobs/{job['Id']}")["TaskList"][0]["level"] == "Series"
    wait_until(lambda: node.instances() == [], 10, what="the fetched series removed")


def test_job_into_a_folder(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path, Folders={"folder": {"Path": str(tmp_path / "routed")},
                                                         "out": {"Path": str(tmp_path / "out"),
                                                                 "Layout": "{PatientID}/{SOPInstanceUID}.dcm"}})
    files = write_instances(tmp_path / "s", 2, patient_id="PF")
    storescu(pacs.dicom_port, files)
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "out", "Items": [{"PatientID": "PF"}]}).json()
    assert job_done(node, job["Id"])["Status"] == "SUCCESS"
    assert {p.stem for p in (tmp_path / "out" / "PF").glob("*.dcm")} == {p.stem for p in files}
