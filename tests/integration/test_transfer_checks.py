"""Before and during a transfer: the pre-check of source and destination, per-node retrieve
timeouts (shorter for studies the PACS calls OFFLINE), and the series of the searched modalities only."""
import pydicom
from test_jobs import job_done, setup

from factory import make_instance, write_instances
from harness import storescu, wait_until
from peers import SlowPacs


def test_a_destination_that_does_not_answer_is_shown_on_the_job_not_as_failed_tasks(cluster, tmp_path):
    dest = cluster.orthanc("dest", start=False)                        # not started yet: nothing answers
    pacs = cluster.orthanc("pacs", start=False)
    node = cluster.orthanc("router", start=False, courier={"AllowedCallers": "KnownModalities"},
                           extra={"DicomModalities": {"dest": dest.as_modality(), "pacs": pacs.as_modality()}})
    pacs.config["DicomModalities"] = {"router": node.as_modality()}
    pacs.start()
    node.start()
    storescu(pacs.dicom_port, write_instances(tmp_path / "a", 2, patient_id="P1")
             + write_instances(tmp_path / "b", 1, patient_id="P1"))
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "P1"}]}).json()
    job = wait_until(lambda: (j := node.get(f"/courier/jobs/{job['Id']}"))["Status"] == "UNREACHABLE" and j, 30,
                     what="the job UNREACHABLE")
    assert "the destination dest does not answer" in job["PrecheckError"]
    assert job["Tasks"]["PENDING"] == 2 and all(t["attempts"] == 0 for t in job["TaskList"])
    assert next(n for n in node.get("/courier/nodes") if n["Id"] == "dest")["LastEcho"]["Ok"] is False
    dest.start()
    assert node.post(f"/courier/jobs/{job['Id']}/retry", {}).status_code == 200        # check again now
    done = job_done(node, job["Id"])
    assert done["Status"] == "SUCCESS" and done["PrecheckError"] is None and len(dest.instances()) == 3


def test_an_offline_study_gets_the_shorter_retrieve_timeout(cluster, tmp_path):
    online = [make_instance(patient_id="P1", study_uid="1.2.826.0.1.77.1", series_uid="1.2.826.0.1.77.1.1",
                            instance_number=n) for n in range(1, 4)]
    offline = [make_instance(patient_id="P1", study_uid="1.2.826.0.1.77.2", series_uid="1.2.826.0.1.77.2.1",
                             instance_number=n) for n in range(1, 4)]
    node, dest, _ = setup(cluster, tmp_path, pacs={"AET": "X", "Host": "127.0.0.1", "Port": 1})
    node.stop()
    pacs = SlowPacs(online + offline, node.dicom_port, 1.0,
                    availability={"1.2.826.0.1.77.1": "ONLINE", "1.2.826.0.1.77.2": "OFFLINE"})
    try:
        node.config["DicomModalities"]["pacs"] = pacs.modality
        node.config["Courier"]["Retry"] = {"MaxAttempts": 1}
        node.config["Courier"]["Nodes"] = {"pacs": {"RetrieveTimeoutSeconds": 60, "OfflineRetrieveTimeoutSeconds": 1.5}}
        node.start()
        answers = node.post("/courier/query", {"Node": "pacs", "Filters": {"PatientID": "P1"}}).json()["Answers"]
        assert {a["StudyInstanceUID"]: a["InstanceAvailability"] for a in answers} == \
            {"1.2.826.0.1.77.1": "ONLINE", "1.2.826.0.1.77.2": "OFFLINE"}
        job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "P1"}]}).json()
        done = job_done(node, job["Id"], timeout=90)
        by_study = {t["study_uid"]: t for t in done["TaskList"]}
        assert by_study["1.2.826.0.1.77.1"]["state"] == "SUCCESS" and by_study["1.2.826.0.1.77.1"]["delivered"] == 3
        assert by_study["1.2.826.0.1.77.2"]["state"] in ("FAILURE", "WARNING")
        assert "timed out" in by_study["1.2.826.0.1.77.2"]["last_error"]
        assert by_study["1.2.826.0.1.77.2"]["availability"] == "OFFLINE"
    finally:
        pacs.close()


def test_only_the_series_of_the_searched_modalities(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path)
    study = pydicom.uid.generate_uid()
    ct = write_instances(tmp_path / "ct", 2, patient_id="P5", study_uid=study, modality="CT")
    mr = write_instances(tmp_path / "mr", 1, patient_id="P5", study_uid=study, modality="MR")
    storescu(pacs.dicom_port, ct + mr)
    only = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Transfer": "SearchedModalities",
                                       "Items": [{"PatientID": "P5", "ModalitiesInStudy": "MR"}]}).json()
    done = job_done(node, only["Id"])
    assert done["Status"] == "SUCCESS" and done["Tasks"]["Total"] == 1 and dest.sop_uids() == {p.stem for p in mr}
    whole = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                        "Items": [{"PatientID": "P5", "ModalitiesInStudy": "MR"}]}).json()
    assert job_done(node, whole["Id"])["Status"] == "SUCCESS"
    assert dest.sop_uids() == {p.stem for p in ct + mr}
    bad = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                      "Items": [{"PatientID": "P5", "Transfer": "Some"}]})
    assert bad.status_code == 400 and "Items[0].Transfer: one of Study, SearchedModalities" in bad.json()["error"]
