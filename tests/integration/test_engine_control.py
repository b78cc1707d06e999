"""Control that acts at once, a hung destination that never takes every worker, refusals reported
exactly: the durable engine against slow, hung and picky peers."""
import time

import pydicom
import pytest
from pynetdicom.sop_class import CTImageStorage

from factory import make_instance, write_instances
from harness import BlackHole, storescu, wait_until
from peers import RecordingScp, SlowPacs

FAST_RETRY = {"MaxAttempts": 2, "InitialDelaySeconds": 0.3, "Multiplier": 1, "MaxDelaySeconds": 1}


def studies(patient, count, per_study):
    """`count` studies of `per_study` CT instances each, as datasets."""
    out = []
    for _ in range(count):
        study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
        out += [make_instance(patient_id=patient, study_uid=study, series_uid=series, instance_number=n)
                for n in range(1, per_study + 1)]
    return out


def study_uids(instances):
    return list(dict.fromkeys(str(ds.StudyInstanceUID) for ds in instances))


def router_with_slow_pacs(cluster, instances, seconds_per_instance=0.25, **courier):
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", start=False, courier={
        "AllowedCallers": "Any", "Workers": 2, "Retry": FAST_RETRY,
        "Nodes": {"pacs": {"MaxParallelTasks": 1}}, **courier},
        extra={"DicomModalities": {"dest": dest.as_modality()}})
    pacs = SlowPacs(instances, node.dicom_port, seconds_per_instance)
    node.config["DicomModalities"]["pacs"] = pacs.modality
    node.start()
    return node, dest, pacs


def create_job(node, instances, urgent=False):
    items = [{"StudyInstanceUID": uid} for uid in study_uids(instances)]
    answer = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Urgent": urgent, "Items": items})
    assert answer.status_code == 200, answer.text
    return answer.json()["Id"]


def job(node, job_id):
    return node.get(f"/courier/jobs/{job_id}")


def test_cancel_stops_a_multi_study_job_before_its_next_study(cluster):
    instances = studies("PC", 3, 12)
    node, dest, pacs = router_with_slow_pacs(cluster, instances)
    try:
        job_id = create_job(node, instances)
        wait_until(lambda: len(pacs.sent) >= 2, 20, what="the first study under way")
        assert node.post(f"/courier/jobs/{job_id}/cancel").json()["Status"] == "CANCELED"
        cancelled_at = len(pacs.sent)
        time.sleep(4)                                         # the first study alone would take 3 s
        assert pacs.moved_studies() == study_uids(instances)[:1]        # no other C-MOVE started
        # the one in flight was cancelled: the fetch looks every 0.3 s, the PACS between instances
        assert len(pacs.sent) <= cancelled_at + 4
        assert job(node, job_id)["Status"] == "CANCELED"
        assert dest.instances() == []
        later = studies("PC2", 1, 2)                          # the worker is free again: a new job runs
        pacs.instances += later
        second = create_job(node, later)
        wait_until(lambda: job(node, second)["Status"] == "SUCCESS", 20, what="the next job to run")
    finally:
        pacs.close()


def test_pause_holds_the_next_study_and_the_job_never_ends_while_paused(cluster):
    instances = studies("PP", 3, 4)
    node, dest, pacs = router_with_slow_pacs(cluster, instances)
    try:
        job_id = create_job(node, instances)
        wait_until(lambda: len(pacs.sent) >= 1, 20, what="the first study under way")
        assert node.post(f"/courier/jobs/{job_id}/pause").json()["Status"] == "PAUSED"
        wait_until(lambda: len(pacs.sent) >= 4, 10, what="the fetch in flight to finish")
        time.sleep(3)
        assert pacs.moved_studies() == study_uids(instances)[:1]        # no new fetch while paused
        paused = job(node, job_id)
        assert paused["Status"] == "PAUSED" and paused["Tasks"]["RUNNING"] == 0
        assert paused["TaskList"][-1]["attempts"] == 0                  # putting it back is no failed attempt
        node.post(f"/courier/jobs/{job_id}/resume")
        done = wait_until(lambda: (j := job(node, job_id))["Status"] not in ("PENDING", "RUNNING") and j, 40,
                          what="the job to end")
        assert done["Status"] == "SUCCESS" and done["Instances"] == {"Expected": 12, "Delivered": 12}
        assert dest.sop_uids() == {str(ds.SOPInstanceUID) for ds in instances}
        assert pacs.moved_studies().count(study_uids(instances)[0]) == 1   # the paused study was not fetched again
    finally:
        pacs.close()


def test_an_urgent_job_goes_before_the_remaining_studies_of_a_running_one(cluster):
    normal = studies("PN", 3, 4)
    urgent = studies("PU", 1, 2)
    # 3 s a study: time for the urgent job's creation (a C-FIND) before the first study ends
    node, dest, pacs = router_with_slow_pacs(cluster, normal + urgent, seconds_per_instance=0.75)
    try:
        normal_id = create_job(node, normal)
        wait_until(lambda: len(pacs.moved_studies()) == 1, 20, what="the normal job under way")
        urgent_id = create_job(node, urgent, urgent=True)
        wait_until(lambda: job(node, normal_id)["Status"] == "SUCCESS", 90, what="the normal job to end")
        assert job(node, urgent_id)["Status"] == "SUCCESS"
        order = pacs.moved_studies()
        assert order == study_uids(normal)[:1] + study_uids(urgent) + study_uids(normal)[1:]
    finally:
        pacs.close()


def test_each_study_is_delivered_while_the_next_is_fetched_and_a_kill_loses_only_the_one_in_flight(cluster):
    instances = studies("PL", 3, 6)
    node, dest, pacs = router_with_slow_pacs(cluster, instances, HeartbeatTimeoutSeconds=2)
    first, second, third = study_uids(instances)
    try:
        job_id = create_job(node, instances)
        wait_until(lambda: len(pacs.moved_studies()) == 2 and len(pacs.sent) >= 8, 30, what="the second study under way")
        # delivered while the second study is being fetched (its outcome recorded a moment later)
        tasks = wait_until(lambda: (t := {t["study_uid"]: t for t in job(node, job_id)["TaskList"]})[first]["state"]
                           == "SUCCESS" and t, 10, what="the first study recorded delivered")
        node.stop(kill=True)
        node.start()
        done = wait_until(lambda: (j := job(node, job_id))["Status"] not in ("PENDING", "RUNNING") and j, 60,
                          what="the job to end after the restart")
        assert done["Status"] == "SUCCESS" and done["Instances"] == {"Expected": 18, "Delivered": 18}
        assert pacs.moved_studies().count(first) == 1          # the study delivered before the kill is not fetched again
        assert pacs.moved_studies().count(second) <= 2 and pacs.moved_studies().count(third) == 1
        last_of_second = max(pacs.sent_at[str(ds.SOPInstanceUID)] for ds in instances if ds.StudyInstanceUID == second)
        assert tasks[first]["finished_at"] < last_of_second
    finally:
        pacs.close()


def test_a_job_counts_progress_per_instance_as_it_is_acknowledged(cluster):
    instances = studies("PG", 1, 40)
    slow_dest = RecordingScp("SLOWDEST", delay=0.06)
    try:
        node = cluster.orthanc("router", start=False, courier={"AllowedCallers": "Any", "Retry": FAST_RETRY},
                               extra={"DicomModalities": {"dest": slow_dest.modality}})
        pacs = SlowPacs(instances, node.dicom_port, 0.0)
        node.config["DicomModalities"]["pacs"] = pacs.modality
        node.start()
        job_id = create_job(node, instances)
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            current = job(node, job_id)
            seen.add(current["Instances"]["Delivered"])
            if current["Status"] not in ("PENDING", "RUNNING"):
                break
            time.sleep(0.05)
        assert current["Status"] == "SUCCESS" and current["Instances"]["Delivered"] == 40
        assert [n for n in seen if 0 < n < 40], seen               # not only 0, then 40
        pacs.close()
    finally:
        slow_dest.close()


def one_sender_one_fetcher(cluster, instances, destination, seconds_per_instance):
    """A router that sends with one worker at a time to `destination` (MaxWorkersPerDestination 1)
    and fetches one study at a time from a SlowPacs (MaxParallelTasks 1), three workers in all."""
    node = cluster.orthanc("router", start=False, courier={
        "AllowedCallers": "Any", "Workers": 3, "MaxWorkersPerDestination": 1, "Retry": FAST_RETRY,
        "Nodes": {"pacs": {"MaxParallelTasks": 1}}}, extra={"DicomModalities": {"dest": destination.modality}})
    pacs = SlowPacs(instances, node.dicom_port, seconds_per_instance)
    node.config["DicomModalities"]["pacs"] = pacs.modality
    node.start()
    return node, pacs


def test_the_next_study_is_fetched_while_the_last_one_is_sent_and_no_further_ahead(cluster):
    """One worker may send to the destination (MaxWorkersPerDestination 1), one study at a time
    comes from the PACS (MaxParallelTasks 1): study 2 is fetched while study 1 is sent, and study 3
    only once study 2 is being sent (at most one fetched study waits for the destination)."""
    instances = studies("PF", 3, 10)
    slow_dest = RecordingScp("SLOWDEST", delay=0.12)            # about 1.2 s a study
    try:
        node, pacs = one_sender_one_fetcher(cluster, instances, slow_dest, 0.01)
        job_id = create_job(node, instances)
        wait_until(lambda: len(pacs.moved_studies()) >= 2, 30, 0.02, what="the second study's C-MOVE")
        assert len(slow_dest.uids()) < 10, "study 2 was fetched only after study 1 was delivered"
        wait_until(lambda: len(pacs.moved_studies()) >= 3, 30, 0.02, what="the third study's C-MOVE")
        assert len(slow_dest.uids()) >= 10, "study 3 was fetched while two fetched studies waited"
        wait_until(lambda: job(node, job_id)["Status"] not in ("PENDING", "RUNNING"), 60, what="the job's end")
        assert job(node, job_id)["Status"] == "SUCCESS" and len(slow_dest.uids()) == 30
        assert slow_dest.duplicates() == 0
        wait_until(lambda: node.instances() == [], 20, what="the fetched copies deleted")
        pacs.close()
    finally:
        slow_dest.close()


def test_a_cancelled_job_deletes_the_study_it_fetched_but_never_sent(cluster):
    instances = studies("PX", 2, 3)
    stuck = RecordingScp("STUCK", delay=5)              # study 1's send hangs; study 2 is fetched and waits
    try:
        node, pacs = one_sender_one_fetcher(cluster, instances, stuck, 0.0)
        job_id = create_job(node, instances)
        wait_until(lambda: len(node.instances()) == 6 and stuck.offered, 30, what="both studies fetched, one sending")
        assert node.post(f"/courier/jobs/{job_id}/cancel").json()["Status"] == "CANCELED"
        wait_until(lambda: node.instances() == [], 30, what="both fetched copies deleted")
        pacs.close()
    finally:
        stuck.close()


def test_a_black_hole_never_holds_more_than_its_cap_even_after_its_tasks_are_cancelled(cluster, tmp_path):
    hole = BlackHole()
    good = cluster.orthanc("good")
    try:
        node = cluster.orthanc("router", courier={
            "AllowedCallers": "Any", "Workers": 4, "MaxWorkersPerDestination": 2, "BatchSize": 1,
            "Retry": {"InitialDelaySeconds": 30},
            "Routes": [{"Name": "to-hole", "Priority": 10, "Match": {"PatientID": "HOLE*"}, "Destinations": ["hole"]},
                       {"Name": "to-good", "Destinations": ["good"]}]},
            extra={"DicomScuTimeout": 15, "DicomModalities": {
                "hole": {"AET": "HOLE", "Host": "127.0.0.1", "Port": hole.port}, "good": good.as_modality()}})
        storescu(node.dicom_port, write_instances(tmp_path / "h1", 4, patient_id="HOLE1"))
        wait_until(lambda: hole.open_now() == 2, 15, what="two sends hanging in the black hole")
        for task in node.get("/courier/tasks", route="to-hole")["tasks"]:
            if task["state"] in ("PENDING", "RUNNING"):
                node.post(f"/courier/tasks/{task['id']}/cancel")
        storescu(node.dicom_port, write_instances(tmp_path / "h2", 4, patient_id="HOLE2"))
        files = write_instances(tmp_path / "g", 6, patient_id="GOOD")
        storescu(node.dicom_port, files)
        good_uids = {p.stem for p in files}
        wait_until(lambda: good_uids <= good.sop_uids(), 10, what="the healthy destination served")
        assert hole.most_open <= 2, hole.most_open                 # the cancelled sends still counted
        slots = node.get("/courier/status")["busy"]
        assert slots.get("hole", 0) <= 2
    finally:
        hole.close()


@pytest.mark.parametrize("refusal,first", [("no-context", "MR"), ("no-context", "CT"), ("A700", "MR")])
def test_a_refused_series_is_reported_exactly_and_the_rest_delivered(cluster, tmp_path, refusal, first):
    if refusal == "no-context":
        picky = RecordingScp("PICKY", accept=(CTImageStorage,))             # MR finds no presentation context
    else:
        picky = RecordingScp("PICKY", refuse=lambda ds: 0xA700 if ds.Modality == "MR" else None)
    try:
        node = cluster.orthanc("router", courier={
            "AllowedCallers": "Any", "Retry": FAST_RETRY,
            "Routes": [{"Name": "study", "Trigger": "StableStudy", "Destinations": ["picky"]}]},
            extra={"DicomModalities": {"picky": picky.modality}})
        study = pydicom.uid.generate_uid()
        mr = write_instances(tmp_path / "mr", 3, modality="MR", patient_id="PR", study_uid=study)
        ct = write_instances(tmp_path / "ct", 4, modality="CT", patient_id="PR", study_uid=study)
        storescu(node.dicom_port, mr + ct if first == "MR" else ct + mr)
        task = wait_until(lambda: (t := node.get("/courier/tasks", route="study")["tasks"])
                          and t[0]["state"] not in ("PENDING", "RUNNING") and t[0], 60, what="the study task to end")
        task = node.get(f"/courier/tasks/{task['id']}")
        assert task["state"] == "WARNING"
        assert set(task["missing"]) == {p.stem for p in mr}
        assert picky.uids() == {p.stem for p in ct}
        assert task["delivered"] == 4 and task["expected"] == 7
    finally:
        picky.close()
