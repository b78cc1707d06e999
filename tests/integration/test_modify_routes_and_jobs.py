"""Modify end to end: tag changes, at the top level and inside sequences, reach every destination
kind while the original stays as it was; with pseudonymization after; a failing hook quarantines;
a job's Modify; the rule tester shows the result."""
import io

import py7zr
import pydicom
import requests
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from factory import make_instance
from harness import storescu, wait_until

FAST_RETRY = {"MaxAttempts": 3, "InitialDelaySeconds": 0.2, "MaxDelaySeconds": 1}
MODIFY = {"Copy": {"AccessionNumber": "StudyID"},
          "Replace": {"StudyDescription": {"Pattern": "^Test ", "With": "Research "}},
          "Set": {"InstitutionName": "Research site", "RequestAttributesSequence[*].RequestedProcedureID": "RP-X"},
          "Remove": ["OperatorsName", "RequestAttributesSequence[0].ScheduledProcedureStepID"]}


def instance_file(folder, **tags):
    folder.mkdir(parents=True, exist_ok=True)
    ds = make_instance(AccessionNumber="ACC-7", OperatorsName="Operator^Olga", InstitutionName="General Hospital",
                       **tags)
    item = Dataset()
    item.RequestedProcedureID, item.ScheduledProcedureStepID = "RP-1", "SPS-1"
    ds.RequestAttributesSequence = Sequence([item])
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def stored(node):
    [instance_id] = node.instances()
    return pydicom.dcmread(io.BytesIO(requests.get(f"{node.url}/instances/{instance_id}/file", timeout=10).content))


def assert_modified(ds):
    assert ds.InstitutionName == "Research site" and ds.StudyID == "ACC-7"
    assert ds.StudyDescription == "Research study" and "OperatorsName" not in ds
    assert ds.RequestAttributesSequence[0].RequestedProcedureID == "RP-X"
    assert "ScheduledProcedureStepID" not in ds.RequestAttributesSequence[0]


def test_modify_reaches_every_destination_kind_and_leaves_the_original(cluster, tmp_path):
    dicom, web, peer = cluster.orthanc("dicomdest"), cluster.orthanc("webdest", dicomweb=True), cluster.orthanc("peerdest")
    (tmp_path / "archive-password").write_text("archive-secret-99")
    node = cluster.orthanc("router", dicomweb=True, courier={
        "Retry": FAST_RETRY, "AllowedCallers": "Any",
        "Folders": {"folder": {"Path": str(tmp_path / "out"), "Layout": "{SOPInstanceUID}.dcm"}},
        "Archives": {"archive": {"Path": str(tmp_path / "zips"), "PasswordFile": str(tmp_path / "archive-password")}},
        "Routes": [{"Name": "all", "Trigger": "StableStudy", "StableAfterSeconds": 1, "Modify": MODIFY,
                    "Destinations": ["dicomdest", "web", "peer", "folder", "archive"]}]},
        extra={"DicomModalities": {"dicomdest": dicom.as_modality()},
               "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": {"web": [web.url + "/dicom-web/"]}},
               "OrthancPeers": {"peer": {"Url": peer.url + "/"}}})
    path = instance_file(tmp_path / "in")
    storescu(node.dicom_port, [path])
    wait_until(lambda: len(dicom.instances()) == len(web.instances()) == len(peer.instances()) == 1, 40,
               what="the instance at the DICOM, DICOMweb and peer destinations")
    for destination in (dicom, web, peer):
        assert_modified(stored(destination))
    assert_modified(wait_until(lambda: [pydicom.dcmread(p) for p in (tmp_path / "out").glob("*.dcm")], 20,
                               what="the file in the folder")[0])
    wait_until(lambda: [t["state"] for t in node.get("/courier/tasks")["tasks"]] == ["SUCCESS"] * 5, 30,
               what="the five tasks delivered")
    [archive] = [p for p in (tmp_path / "zips").rglob("*.7z") if not p.name.startswith(".")]
    with py7zr.SevenZipFile(archive, "r", password="archive-secret-99") as opened:
        opened.extractall(path=tmp_path / "opened")
    assert_modified(pydicom.dcmread(next((tmp_path / "opened").rglob("*.dcm"))))
    original = stored(node)                                  # what Orthanc stored is untouched
    assert original.InstitutionName == "General Hospital" and original.OperatorsName == "Operator^Olga"
    assert original.RequestAttributesSequence[0].ScheduledProcedureStepID == "SPS-1"


def test_modify_comes_before_pseudonymization_and_a_failing_hook_quarantines(cluster, tmp_path):
    (tmp_path / "key").write_text("modify-key-0123456789abcdef")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "boom.py").write_text("def modify(ds, context):\n    raise ValueError('no rule for ' + context.route)\n")
    (scripts / "mark.py").write_text("def modify(ds, context):\n    ds.BodyPartExamined = 'CHEST'\n")
    dest, other = cluster.orthanc("dest"), cluster.orthanc("other")
    node = cluster.orthanc("router", courier={
        "Retry": FAST_RETRY, "AllowedCallers": "Any", "ScriptsDirectory": str(scripts),
        "Pseudonymization": {"trial": {"SecretFile": str(tmp_path / "key")}},
        "Routes": [{"Name": "pseudo", "Match": {"Modality": "CT"}, "Pseudonymize": "trial", "Destinations": ["dest"],
                    "Modify": {"Set": {"PatientName": "Leak^Me"}, "Script": "mark.py"}},
                   {"Name": "broken", "Match": {"Modality": "MR"}, "Destinations": ["other"],
                    "Modify": {"Script": "boom.py"}}]},
        extra={"DicomModalities": {"dest": dest.as_modality(), "other": other.as_modality()}})
    storescu(node.dicom_port, [instance_file(tmp_path / "ct", PatientID="PID-9")])
    wait_until(lambda: len(dest.instances()) == 1, 30, what="the pseudonymized instance")
    sent = stored(dest)
    assert sent.BodyPartExamined == "CHEST"                         # the hook ran
    assert str(sent.PatientName) != "Leak^Me" and sent.PatientID != "PID-9"   # what Modify wrote was pseudonymized
    storescu(node.dicom_port, [instance_file(tmp_path / "mr", modality="MR")])
    entries = wait_until(lambda: node.get("/courier/quarantine")["entries"], 30, what="the quarantined MR")
    assert entries[0]["disposition"] == "modify-error"
    assert entries[0]["reason"] == "Modify script boom.py failed: ValueError at line 2 of boom.py"   # no value in it
    [task] = [t for t in node.get("/courier/tasks")["tasks"] if t["route"] == "broken"]
    wait_until(lambda: node.get(f"/courier/tasks/{task['id']}")["state"] == "FAILURE", 20, what="the task failed")
    assert node.get(f"/courier/tasks/{task['id']}")["attempts"] == 1 and other.instances() == []
    tested = node.post("/courier/routes/test", {"Tags": {"Modality": "CT", "PatientName": "Real^Name"}})
    modified = tested.json()["Modified"]["pseudo"]
    assert modified["BodyPartExamined"] == "CHEST" and "Leak" not in str(modified) and "Real" not in str(modified)
    refused = node.post("/courier/routes/test", {"Tags": {"Modality": "MR"}}).json()["Modified"]["broken"]
    assert refused["Refused"].startswith("modify-error: Modify script boom.py failed")


def test_a_job_modifies_what_it_fetched(cluster, tmp_path):
    dest, pacs = cluster.orthanc("dest"), cluster.orthanc("pacs", start=False)
    node = cluster.orthanc("router", start=False, courier={"Retry": FAST_RETRY, "Routes": []},
                           extra={"DicomModalities": {"dest": dest.as_modality()}})
    pacs.config["DicomModalities"] = {"router": node.as_modality()}
    pacs.start()
    node.config["DicomModalities"]["pacs"] = pacs.as_modality()
    node.start()
    storescu(pacs.dicom_port, [instance_file(tmp_path / "s", PatientID="JOB-1")])
    bad = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "JOB-1"}],
                                      "Modify": {"Set": {"Nope": "x"}}})
    assert bad.status_code == 400 and bad.json()["error"].startswith("Modify.Set.Nope: 'Nope' is not a DICOM keyword")
    scripted = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "JOB-1"}],
                                           "Modify": {"Script": "x.py"}})
    assert scripted.status_code == 400 and "Modify.Script" in scripted.json()["error"]
    job = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "JOB-1"}],
                                      "Modify": MODIFY})
    assert job.status_code == 200, job.text
    wait_until(lambda: len(dest.instances()) == 1, 40, what="the job's study at dest")
    assert_modified(stored(dest))
