"""Subscriptions against real PACS (a plain Orthanc, DCMTK's dcmqrscp): the past in partitions,
oldest first; new studies within a schedule period; nothing transferred twice across a restart;
a grown study topped up with its new instances only; MaxStudiesPerRun and windows hold. And the
job lifecycle: items resolved in the background (QUERYING -> READY -> start), items added later,
deletion."""
import datetime
import time

import requests
from test_jobs import job_done, setup

from factory import write_instances
from harness import storescu, wait_until
from peers import DcmQrScp


def day(offset):
    return f"{datetime.date.today() + datetime.timedelta(days=offset):%Y%m%d}"


def studies_at(folder, pacs_port, days, patient="P1", count=2, **tags):
    """One study per day offset at the PACS; their files by offset."""
    made = {}
    for offset in days:
        made[offset] = write_instances(folder / f"d{-offset}", count, patient_id=patient, StudyDate=day(offset), **tags)
        if pacs_port:
            storescu(pacs_port, made[offset])
    return made


def subscription(node, sub_id):
    return node.get(f"/courier/subscriptions/{sub_id}")


def job_tasks(node, job_id):
    return node.get(f"/courier/jobs/{job_id}")["TaskList"]


def test_a_subscription_transfers_the_past_oldest_first_then_what_is_new_and_never_twice(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path)
    made = studies_at(tmp_path, pacs.dicom_port, [-12, -8, -5, -2, 0])              # -12 is before From
    preview = node.post("/courier/subscriptions/preview", {"Source": "pacs", "Destination": "dest", "From": "-10d",
                                                           "Every": "2s"})
    assert preview.status_code == 200, preview.text
    assert [(w["Part"], w["Studies"]) for w in preview.json()["Windows"]] == [("present", 1), ("past", 0)]
    assert preview.json()["PastDays"] == 10 and dest.instances() == []            # a preview fetches nothing
    created = node.post("/courier/subscriptions", {"Name": "ten days", "Source": "pacs", "Destination": "dest",
                                                   "From": "-10d", "Every": "2s"})
    assert created.status_code == 200, created.text
    sub = created.json()
    assert sub["Status"] == "ACTIVE" and sub["Past"] == {"From": day(-10), "End": day(-1), "NextDay": day(-10),
                                                          "Done": False}
    wanted = {p.stem for offset in (-8, -5, -2, 0) for p in made[offset]}
    wait_until(lambda: dest.sop_uids() == wanted, 90, 0.5, what="the past and today at the destination")
    wait_until(lambda: subscription(node, sub["Id"])["Past"]["Done"], 60, 0.5, what="the past done")
    # Done when the last tasks are made; each is recorded SUCCESS a moment after its delivery
    tasks = wait_until(lambda: len(t := job_tasks(node, sub["Job"])) == 4 and all(x["state"] == "SUCCESS" for x in t)
                       and t, 15, what="the four tasks recorded SUCCESS")
    offset_of = {_uid(files): offset for offset, files in made.items()}
    order = [offset_of[t["study_uid"]] for t in sorted(tasks, key=lambda t: t["id"])]
    assert order == [0, -8, -5, -2], order                   # today's first run, then the past oldest first

    # a study stored later at the PACS arrives within about one period
    late = studies_at(tmp_path / "late", pacs.dicom_port, [0], patient="P2")[0]
    stored_at = time.monotonic()
    wait_until(lambda: {p.stem for p in late} <= dest.sop_uids(), 30, 0.2, what="the new study at the destination")
    assert time.monotonic() - stored_at < 15

    # a restart, and several reruns, transfer nothing twice
    node.stop()
    node.start()
    runs = subscription(node, sub["Id"])["Runs"]
    wait_until(lambda: subscription(node, sub["Id"])["Runs"] >= runs + 2, 30, 0.5, what="two more runs")
    assert len(job_tasks(node, sub["Job"])) == 5
    assert subscription(node, sub["Id"])["Transferred"] == {"Studies": 5, "TopUps": 0, "FailedTasks": 0}

    # a study that grows at the PACS (within the OverlapDays the runs look back) is topped up with
    # its new instances only
    grown = write_instances(tmp_path / "grown", 2, patient_id="P1", StudyDate=day(0), study_uid=_uid(made[0]))
    storescu(pacs.dicom_port, grown)
    wait_until(lambda: {p.stem for p in grown} <= dest.sop_uids(), 30, 0.5, what="the new instances at the destination")
    top_up = max(job_tasks(node, sub["Job"]), key=lambda t: t["id"])
    wait_until(lambda: node.get(f"/courier/tasks/{top_up['id']}")["state"] == "SUCCESS", 20, what="the top-up done")
    top_up = node.get(f"/courier/tasks/{top_up['id']}")
    assert top_up["study_uid"] == _uid(made[0]) and top_up["expected"] == 2 and top_up["delivered"] == 2
    listed = subscription(node, sub["Id"])
    assert listed["Transferred"] == {"Studies": 5, "TopUps": 1, "FailedTasks": 0}
    assert {(s["Instances"], s["Transfers"]) for s in listed["Studies"]["rows"] if s["StudyInstanceUID"] == _uid(made[0])} \
        == {(4, 2)}

    # pause stops the runs; delete stops the subscription, its job stays
    paused = node.post(f"/courier/subscriptions/{sub['Id']}/pause", {}).json()
    assert paused["Status"] == "PAUSED"
    time.sleep(2.5)                                       # a run already under way (every 2 s) still ends
    runs = subscription(node, sub["Id"])["Runs"]
    time.sleep(5)
    assert subscription(node, sub["Id"])["Runs"] == runs
    assert node.delete(f"/courier/subscriptions/{sub['Id']}").status_code == 200
    assert node.get(f"/courier/jobs/{sub['Job']}")["Tasks"]["SUCCESS"] == 6
    assert [e["action"] for e in node.get("/courier/audit", route=f"job-{sub['Job']}")["entries"]][:2] == \
        ["subscription-delete", "subscription-pause"]


def _uid(files):
    import pydicom
    return pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID


def test_max_studies_per_run_and_windows_hold_against_dcmqrscp(cluster, tmp_path):
    files = [p for n, offset in enumerate((-3, -3, -3, -2))
             for p in write_instances(tmp_path / f"s{n}", 1, patient_id=f"P{n}", StudyDate=day(offset))]
    dest = cluster.orthanc("dest")
    router = cluster.orthanc("router", start=False, courier={"AllowedCallers": "KnownModalities"},
                             extra={"DicomModalities": {"dest": dest.as_modality()}})
    qr = DcmQrScp(tmp_path, files, {router.aet: router.dicom_port})
    try:
        hour = datetime.datetime.now() + datetime.timedelta(hours=3)
        closed = f"Mon-Sun {hour:%H}:00-{(hour + datetime.timedelta(hours=1)):%H}:00"
        router.config["DicomModalities"]["pacs"] = qr.modality
        router.config["DicomModalities"]["shut"] = {**qr.modality}
        router.config["Courier"]["Nodes"] = {"shut": {"Windows": [closed]}}
        router.start()
        capped = router.post("/courier/subscriptions", {"Source": "pacs", "Destination": "dest", "From": "-3d",
                                                        "Till": "-1d", "Partition": "Week", "MaxStudiesPerRun": 1})
        assert capped.status_code == 200, capped.text
        waiting = router.post("/courier/subscriptions", {"Source": "shut", "Destination": "dest", "From": "-3d",
                                                         "Every": "1s"}).json()
        sub = capped.json()
        done = wait_until(lambda: (s := subscription(router, sub["Id"]))["Status"] == "FINISHED" and s, 90, 0.3,
                          what="the subscription FINISHED")
        assert done["Transferred"]["Studies"] == 4, done
        tasks = sorted(job_tasks(router, sub["Job"]), key=lambda t: t["id"])
        assert all(later["created_at"] >= earlier["finished_at"]              # one study per run, the next
                   for earlier, later in zip(tasks, tasks[1:], strict=False)), tasks   # only once the last was done
        assert len(dest.instances()) == 4
        runs = router.get("/courier/audit", action="subscription-run")["entries"]
        assert {e["detail"]["tasks"] for e in runs if e["detail"]["subscription"] == sub["Id"]} == {1}
        shut = subscription(router, waiting["Id"])
        assert shut["Runs"] == 0 and shut["Tasks"]["Total"] == 0 and shut["NextRunAt"] > time.time() + 3600
    finally:
        qr.close()


def test_job_items_resolved_in_the_background_then_started_added_and_deleted(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path)
    made = studies_at(tmp_path, pacs.dicom_port, [-4, -1], patient="P7")
    made_other = studies_at(tmp_path / "o", pacs.dicom_port, [-1], patient="P8")
    created = node.post("/courier/jobs", {"Source": "pacs", "Destination": "dest", "Start": "manual",
                                          "Items": [{"PatientID": "P7", "StudyDate": "-2d-TODAY"}, {"PatientID": "absent"}]})
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["Status"] == "QUERYING" and job["Items"] == {"Total": 2, "Resolved": 0, "Failed": 0}
    job = wait_until(lambda: (j := node.get(f"/courier/jobs/{job['Id']}"))["Status"] == "READY" and j, 30,
                     what="the job READY")
    assert job["Items"] == {"Total": 2, "Resolved": 2, "Failed": 1} and job["Tasks"]["PENDING"] == 1  # -1 only: -2d-TODAY
    time.sleep(2)
    assert dest.instances() == []                                     # READY waits for start
    refused = node.post(f"/courier/jobs/{job['Id']}/resume", {})
    assert refused.status_code == 409 and "READY" in refused.json()["error"]      # only start starts it
    assert node.post(f"/courier/jobs/{job['Id']}/start", {}).status_code == 200
    assert job_done(node, job["Id"])["Status"] == "SUCCESS"
    assert dest.sop_uids() == {p.stem for p in made[-1]}
    again = node.post(f"/courier/jobs/{job['Id']}/start", {})
    assert again.status_code == 409 and "started already" in again.json()["error"]
    added = node.post(f"/courier/jobs/{job['Id']}/items", {"Items": [{"PatientID": "P7"}, {"PatientID": "P8"}]})
    assert added.status_code == 200 and added.json()["Added"] == 2, added.text     # P7's -1 study it has already
    assert job_done(node, job["Id"])["Tasks"]["SUCCESS"] == 3
    assert dest.sop_uids() == {p.stem for paths in (made[-4], made[-1], made_other[-1]) for p in paths}
    refused = node.delete(f"/courier/jobs/{job['Id'] + 100}")
    assert refused.status_code == 404
    assert node.delete(f"/courier/jobs/{job['Id']}").status_code == 200
    assert requests.get(f"{node.url}/courier/jobs/{job['Id']}", auth=node.auth, timeout=10).status_code == 404
    assert [e["action"] for e in node.get("/courier/audit", route=f"job-{job['Id']}")["entries"]][0] == "job-deleted"


def test_items_of_a_source_that_does_not_answer_wait_instead_of_failing(cluster, tmp_path):
    from harness import free_port
    node, dest, pacs = setup(cluster, tmp_path)
    node.stop()
    node.config["DicomModalities"]["gone"] = ["GONE", "127.0.0.1", free_port()]
    node.start()
    job = node.post("/courier/jobs", {"Source": "gone", "Destination": "dest", "Start": "manual",
                                      "Items": [{"PatientID": "P1"}, {"PatientID": "P2"}]}).json()
    time.sleep(4)                                                     # several scheduler passes
    again = node.get(f"/courier/jobs/{job['Id']}")
    assert again["Status"] == "QUERYING" and again["Items"] == {"Total": 2, "Resolved": 0, "Failed": 0}
