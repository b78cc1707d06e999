"""StableSeries and StableStudy routes complete from Courier's own record of arrivals: nothing is lost
when the router stops or is killed while a study arrives, late instances go alone, CompleteWhen,
ForceAfterSeconds and a forced completion through the REST API."""
import time

import pydicom
import pytest
import requests

from factory import write_instances
from harness import storescu, wait_until
from peers import RecordingScp


def router(cluster, recorder, **route):
    route = {"Name": "r", "Trigger": "StableStudy", "Destinations": ["recorder"], **route}
    return cluster.orthanc("router", courier={"AllowedCallers": "Any", "Routes": [route]},
                           extra={"StableAge": 60, "DicomModalities": {"recorder": recorder.modality}})


@pytest.fixture
def recorder():
    scp = RecordingScp()
    yield scp
    scp.close()


@pytest.mark.parametrize("trigger", ["StableStudy", "StableSeries"])
@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "sigterm"])
def test_a_study_arriving_when_the_router_stops_is_delivered_once_after_the_restart(cluster, tmp_path, recorder,
                                                                                     trigger, kill):
    node = router(cluster, recorder, Trigger=trigger, StableAfterSeconds=3)
    study = pydicom.uid.generate_uid()
    files = write_instances(tmp_path / "a", 6, study_uid=study) + write_instances(tmp_path / "b", 6, study_uid=study)
    storescu(node.dicom_port, files)
    node.stop(kill=kill)                               # before the study has been quiet for 3 s
    assert recorder.uids() == set()
    node.start()
    wait_until(lambda: recorder.uids() == {p.stem for p in files}, 30, what="the whole study delivered")
    time.sleep(4)                                      # nothing more comes: each instance once
    assert recorder.duplicates() == 0 and len(recorder.received) == len(files)
    completed = node.get("/courier/audit", action="resource-completed")["entries"]
    assert len(completed) == (1 if trigger == "StableStudy" else 2)


def test_a_late_instance_reopens_its_series_and_goes_alone(cluster, tmp_path, recorder):
    node = router(cluster, recorder, Trigger="StableSeries", StableAfterSeconds=2)
    series, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    first = write_instances(tmp_path / "first", 3, study_uid=study, series_uid=series)
    storescu(node.dicom_port, first)
    wait_until(lambda: len(recorder.received) == 3, 20, what="the series delivered")
    late = write_instances(tmp_path / "late", 1, study_uid=study, series_uid=series)
    storescu(node.dicom_port, late)
    wait_until(lambda: len(recorder.received) == 4, 20, what="the late instance delivered")
    time.sleep(3)
    assert recorder.received[-1] == late[0].stem and recorder.duplicates() == 0
    tasks = sorted(node.get("/courier/tasks", route="r")["tasks"], key=lambda t: t["id"])
    assert [(t["level"], t["expected"], t["state"]) for t in tasks] == [("Series", 3, "SUCCESS"), ("Series", 1, "SUCCESS")]


def test_complete_when_the_listed_series_are_there(cluster, tmp_path, recorder):
    node = router(cluster, recorder, CompleteWhen={"Modalities": ["CT", "MR"], "SeriesDescriptions": ["mr*"]})
    study = pydicom.uid.generate_uid()
    ct = write_instances(tmp_path / "ct", 2, study_uid=study, modality="CT")
    storescu(node.dicom_port, ct)
    wait_until(lambda: [(p["Level"], p["Instances"], p["Routes"][0]["CompleteNow"])
                        for p in node.get("/courier/completion")["Pending"]] == [("Study", 2, None)], 15,
               what="the CT series recorded, the study pending")
    time.sleep(2)
    assert recorder.uids() == set()                     # waits for the MR series (StableAge is 60 s)
    started = time.monotonic()
    mr = write_instances(tmp_path / "mr", 2, study_uid=study, modality="MR")
    storescu(node.dicom_port, mr)
    wait_until(lambda: recorder.uids() == {p.stem for p in ct + mr}, 15, what="the study complete")
    assert time.monotonic() - started < 10              # well before the 60 s of StableAge
    assert node.get("/courier/completion")["Pending"] == []


def test_force_after_seconds_completes_a_study_that_keeps_growing(cluster, tmp_path, recorder):
    node = router(cluster, recorder, StableAfterSeconds=30, ForceAfterSeconds=3)
    study = pydicom.uid.generate_uid()
    sent = []
    started = time.monotonic()
    for n in range(6):                                 # an instance every second: never quiet for 30 s
        files = write_instances(tmp_path / f"s{n}", 1, study_uid=study)
        storescu(node.dicom_port, files)
        sent += files
        time.sleep(1)
    wait_until(lambda: len(recorder.received) >= 3, 10, what="a forced completion")
    first_delivery = time.monotonic() - started
    assert first_delivery < 20                          # the loop alone takes 6 s; without the force, about 36 s
    reasons = [e["detail"]["why"] for e in node.get("/courier/audit", action="resource-completed")["entries"]]
    assert "force-after" in reasons


def test_force_by_rest_completes_now_and_the_dashboard_lists_what_waits(cluster, tmp_path, recorder):
    node = router(cluster, recorder)                                  # StableAge 60
    files = write_instances(tmp_path / "s", 2)
    storescu(node.dicom_port, files)
    pending = wait_until(lambda: node.get("/courier/completion")["Pending"], 10, what="the study pending")
    assert pending[0]["Routes"][0]["DueInSeconds"] > 50
    assert "Waiting for completion" in requests.get(node.url + "/courier/ui/", timeout=10).text
    answer = node.post(f"/courier/completion/{pending[0]['Id']}/force")
    assert answer.status_code == 200 and answer.json()["Level"] == "Study"
    wait_until(lambda: recorder.uids() == {p.stem for p in files}, 10, what="the forced study delivered")
    assert node.post("/courier/completion/0000/force").status_code == 404
    assert node.get("/courier/audit", action="completion-forced")["total"] == 1
