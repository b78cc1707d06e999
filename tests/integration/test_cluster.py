"""Several routers on one PostgreSQL (Orthanc's index and storage through orthanc-postgresql,
Courier's store beside them): any router takes any instance, delivers any task, completes any
study and fetches any job's study; one killed with kill -9 loses nothing."""
import itertools
import os
import threading
import time

import pydicom

from factory import make_instance, write_instances
from harness import Orthanc, storescu, wait_until
from peers import RecordingScp, SlowPacs


def two_routers(cluster, postgres, tmp_path, modalities, routes, **courier):
    orthanc_db, courier_db = postgres.create_database(), postgres.create_database()
    nodes = []
    for name in ("a", "b"):
        node = cluster.orthanc(name, start=False, postgresql=orthanc_db, courier={
            "AllowedCallers": "Any", "RouterName": name, "Database": {"Url": courier_db}, "HeartbeatTimeoutSeconds": 4,
            "Workers": 2, "Retry": {"InitialDelaySeconds": 0.5, "MaxDelaySeconds": 2}, "Routes": routes, **courier},
            extra={"DicomModalities": dict(modalities)})
        nodes.append(node)
    for node in nodes:
        node.start()
    return nodes, courier_db


def test_two_routers_share_the_work_and_one_killed_loses_nothing(cluster, tmp_path, postgres):
    # 20 ms per instance at EACH: A's batches stay RUNNING long enough that the kill below finds it
    # holding some (without it, A was once between two batches at the kill, and held none)
    each, study = RecordingScp("EACH", delay=0.02), RecordingScp("STUDY")
    try:
        (a, b), courier_db = two_routers(cluster, postgres, tmp_path, {"each": each.modality, "study": study.modality},
                                         [{"Name": "each", "Destinations": ["each"]},
                                          {"Name": "study", "Trigger": "StableStudy", "StableAfterSeconds": 3,
                                           "Destinations": ["study"]}])
        files = []
        for n in range(6):                                     # 6 studies of 2 series: 600 instances
            uid = pydicom.uid.generate_uid()
            for s in range(2):
                files += write_instances(tmp_path / f"st{n}-{s}", 50, patient_id=f"C{n}", study_uid=uid)
        halves = (files[0::2], files[1::2])                   # every study arrives through both routers
        senders = [threading.Thread(target=storescu, args=(node.dicom_port, half), kwargs={"check": False})
                   for node, half in zip((a, b), halves, strict=True)]
        for sender in senders:
            sender.start()
        wait_until(lambda: len(each.received) >= 150, 60, what="deliveries under way through both routers")

        def running_on_a():
            return [t["id"] for t in b.get("/courier/tasks", state="RUNNING", limit=1000)["tasks"]
                    if t["owner"].startswith("a:")]
        wait_until(running_on_a, 30, 0.01, what="router A holding tasks")
        a.stop(kill=True)                                      # kill -9 mid-way, tasks in its hands
        orphans = running_on_a()                               # what A held when it died
        assert orphans
        for sender in senders:
            sender.join(120)
        stored = {i["MainDicomTags"]["SOPInstanceUID"] for i in b.get("/instances", expand="")}
        missing = [p for p in files if p.stem not in stored]   # what A never took, sent again to B
        if missing:
            storescu(b.dicom_port, missing)
        everything = {p.stem for p in files}
        wait_until(lambda: each.uids() == everything, 120, 0.5, what="every instance through the Instance route")
        wait_until(lambda: study.uids() == everything, 120, 0.5, what="every study through the StableStudy route")
        time.sleep(5)                                          # nothing more arrives: each study completed once
        assert each.duplicates() <= 2 * 50, each.duplicates()  # at most the batches in flight when A died
        assert study.duplicates() <= 2 * 100, study.duplicates()
        completed: dict[str, list[float]] = {}
        for entry in b.get("/courier/audit", action="resource-completed", limit=100)["entries"]:
            completed.setdefault(entry["resource_id"], []).append(entry["at"])
        assert len(completed) == 6                             # every study completed
        for times in completed.values():                       # once per quiet time, across routers: a study
            times.sort()                                       # completes again only for what came after
            assert all(later - earlier >= 3 for earlier, later in itertools.pairwise(times)), times   # (resent ones)
        requeued = b.get("/courier/audit", action="task-requeued", limit=1000)["entries"]
        lost = {e["task_id"] for e in requeued if "heartbeat lost" in (e["detail"] or {}).get("reason", "")}
        assert set(orphans) <= lost, (orphans, lost)           # every task A held was put back by B
        twin = Orthanc(tmp_path, "b-twin", courier=dict(b.config["Courier"]), postgresql=None,
                       extra={"DicomModalities": b.config["DicomModalities"]})
        cluster.nodes.append(twin)
        twin.start(wait=False)                                 # a second live router named "b" refuses to start
        wait_until(lambda: twin.process.poll() is not None, 30, what="the twin to refuse")
        assert "another router named 'b' is running" in twin.log_tail(200)
    finally:
        each.close()
        study.close()


def studies(patient_id: str, count: int, per_study: int) -> tuple[list[str], list]:
    """`count` studies of `per_study` instances of one patient: (their Study Instance UIDs, the instances)."""
    uids = [pydicom.uid.generate_uid() for _ in range(count)]
    return uids, [make_instance(patient_id=patient_id, study_uid=uid, instance_number=i)
                  for uid in uids for i in range(1, per_study + 1)]


def slow_pacs_and_two_routers(cluster, postgres, tmp_path, dest, instances, seconds_per_instance):
    """A PACS that C-MOVEs `instances` slowly (one study at a time) to either of two routers."""
    ports = {}
    pacs = SlowPacs(instances, ports, seconds_per_instance)
    try:
        (a, b), _ = two_routers(cluster, postgres, tmp_path, {"dest": dest.as_modality(), "pacs": pacs.modality}, [],
                                Nodes={"pacs": {"MaxParallelTasks": 1}})
    except BaseException:
        pacs.close()
        raise
    ports.update({a.aet: a.dicom_port, b.aet: b.dicom_port})
    return pacs, (a, b)


def test_a_job_created_on_a_router_that_is_then_killed_completes_on_the_other(cluster, tmp_path, postgres):
    uids, instances = studies("CJ", 3, 6)
    dest = cluster.orthanc("dest")
    pacs, (a, b) = slow_pacs_and_two_routers(cluster, postgres, tmp_path, dest, instances, 0.25)
    try:
        job = a.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                       "Items": [{"StudyInstanceUID": uid} for uid in uids]}).json()
        wait_until(lambda: len(pacs.sent) >= 2, 30, what="the job under way")
        a.stop(kill=True)
        done = wait_until(lambda: (j := b.get(f"/courier/jobs/{job['Id']}"))["Status"] not in ("PENDING", "RUNNING")
                          and j, 90, 0.5, what="the job to end on the other router")
        assert done["Status"] == "SUCCESS" and done["Instances"] == {"Expected": 18, "Delivered": 18}
        assert dest.sop_uids() == {str(ds.SOPInstanceUID) for ds in instances}
    finally:
        pacs.close()


def test_pause_and_cancel_through_one_router_stop_the_job_running_on_the_other(cluster, tmp_path, postgres):
    uids, instances = studies("CP", 3, 10)
    dest = cluster.orthanc("dest")
    pacs, (a, b) = slow_pacs_and_two_routers(cluster, postgres, tmp_path, dest, instances, 0.3)
    try:
        job_id = a.post("/courier/jobs", {"Source": "pacs", "Destination": "dest",
                                          "Items": [{"StudyInstanceUID": uid} for uid in uids]}).json()["Id"]
        running = wait_until(lambda: [t for t in a.get(f"/courier/jobs/{job_id}")["TaskList"] if t["state"] == "RUNNING"],
                             30, 0.2, what="a task of the job running")
        runner, other = (a, b) if running[0]["owner"].startswith("a") else (b, a)
        wait_until(lambda: len(pacs.sent) >= 1, 20, what="the first study under way")
        assert other.post(f"/courier/jobs/{job_id}/pause").json()["Status"] == "PAUSED"
        wait_until(lambda: len(pacs.sent) >= 10, 10, what="the study in flight to finish")
        time.sleep(3)
        assert pacs.moved_studies() == uids[:1]              # the runner started nothing more while paused
        assert other.post(f"/courier/jobs/{job_id}/resume").json()["Status"] in ("PENDING", "RUNNING")
        wait_until(lambda: len(pacs.moved_studies()) == 2 and len(pacs.sent) >= 12, 20, what="the next study under way")
        assert other.post(f"/courier/jobs/{job_id}/cancel").json()["Status"] == "CANCELED"
        cancelled_at = len(pacs.sent)
        time.sleep(4)                                          # the rest of that study would take 2 s
        # the fetch looks every 0.3 s and the cancel comes through PostgreSQL; 8 were still to come
        assert len(pacs.sent) <= cancelled_at + 4 and pacs.moved_studies() == uids[:2]
        assert runner.get(f"/courier/jobs/{job_id}")["Status"] == "CANCELED"
        assert not [t for t in runner.get(f"/courier/jobs/{job_id}")["TaskList"] if t["state"] == "RUNNING"]
    finally:
        pacs.close()


def _free_range(count: int) -> int:
    import random
    import socket
    for _attempt in range(50):
        base = random.randrange(20000, 40000)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError("no free port range")


def test_the_shipped_cluster_example_runs_two_routers_behind_haproxy(tmp_path):
    """`make cluster` (cluster/run.py): PostgreSQL, two routers sharing it, HAProxy in front; storescu
    to the balancer lands in the shared index, both routers see it; one SIGTERM stops it all."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import requests

    from harness import REPO
    data = Path(tempfile.mkdtemp(prefix="courier-cluster-"))          # the postgres user must reach it
    os.chmod(data, 0o755)
    base = _free_range(7)
    log = open(tmp_path / "cluster.log", "wb")
    run = subprocess.Popen([sys.executable, str(REPO / "cluster" / "run.py"), "--data", str(data), "--base-port", str(base)],
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    auth = ("admin", "change-me")
    try:
        wait_until(lambda: b"ready:" in (tmp_path / "cluster.log").read_bytes(), 120, 0.5, what="the cluster ready")
        files = write_instances(tmp_path / "in", 3, patient_id="CL1") + write_instances(tmp_path / "in2", 2, patient_id="CL2")
        storescu(base + 1, files[:3], calling="CTSCANNER")
        storescu(base + 1, files[3:], calling="CTSCANNER")                 # another association, maybe another router
        for router_http in (base + 2, base + 4):
            listed = requests.get(f"http://127.0.0.1:{router_http}/instances", auth=auth, timeout=10).json()
            assert len(listed) == 5                                        # one index: each router sees everything
        status = requests.get(f"http://127.0.0.1:{base}/courier/status", auth=auth, timeout=10)
        assert status.status_code == 200 and status.json()["router"] in ("router-a", "router-b")
        routers = {requests.get(f"http://127.0.0.1:{base}/courier/status", auth=auth, timeout=10).json()["router"]
                   for _ in range(6)}
        assert routers == {"router-a", "router-b"}                         # HTTP is balanced over both
    finally:
        os.killpg(run.pid, signal.SIGTERM) if run.poll() is None else None
        run.wait(60)
        log.close()
    output = (tmp_path / "cluster.log").read_text()
    assert "cluster stopped" in output
    for name in ("router-a", "router-b"):
        assert "Courier stopped: 0 task(s) left RUNNING" in (data / f"{name}.log").read_text(errors="replace")
    shutil.rmtree(data, ignore_errors=True)           # its PostgreSQL cluster (kept when a check above failed)


def test_a_subscription_goes_on_on_the_other_router_and_transfers_each_study_once(cluster, tmp_path, postgres):
    import datetime
    uids, instances = studies("CS", 4, 5)
    for ds in instances:                                       # studies of yesterday: the subscription's past
        ds.StudyDate = f"{datetime.date.today() - datetime.timedelta(days=1):%Y%m%d}"
    dest = cluster.orthanc("dest")
    pacs, (a, b) = slow_pacs_and_two_routers(cluster, postgres, tmp_path, dest, instances, 0.2)
    try:
        created = a.post("/courier/subscriptions", {"Source": "pacs", "Destination": "dest", "From": "-2d",
                                                    "Every": "1s", "MaxStudiesPerRun": 1})
        assert created.status_code == 200, created.text
        sub = created.json()
        wait_until(lambda: len(pacs.sent) >= 3, 30, what="the subscription under way")
        a.stop(kill=True)                                      # kill -9: its runs and tasks go on on B
        everything = {str(ds.SOPInstanceUID) for ds in instances}
        wait_until(lambda: dest.sop_uids() == everything, 120, 0.5, what="every study at the destination")
        runs = b.get(f"/courier/subscriptions/{sub['Id']}")["Runs"]
        wait_until(lambda: b.get(f"/courier/subscriptions/{sub['Id']}")["Runs"] >= runs + 3, 30, what="more runs on B")
        listed = b.get(f"/courier/subscriptions/{sub['Id']}")
        assert listed["Transferred"] == {"Studies": 4, "TopUps": 0, "FailedTasks": 0}
        tasks = b.get(f"/courier/jobs/{sub['Job']}")["TaskList"]
        assert sorted(t["study_uid"] for t in tasks) == sorted(uids)       # one task per study, never a second
        assert all(t["state"] == "SUCCESS" for t in tasks)
    finally:
        pacs.close()


def test_one_router_watches_a_shared_folder_and_the_other_takes_it_over_when_it_dies(cluster, tmp_path, postgres):
    dest = cluster.orthanc("dest")
    inbox = tmp_path / "shared-inbox"
    (a, b), _ = two_routers(cluster, postgres, tmp_path, {"dest": dest.as_modality()}, [],
                            Imports={"shared": {"Path": str(inbox), "QuietSeconds": 0.5, "After": "Delete",
                                                "Destinations": ["dest"], "RescanSeconds": 1}})
    watching = {node: node.get("/courier/imports")["imports"][0]["Watching"] for node in (a, b)}
    assert sorted(watching.values()) == [False, True]                     # one router at a time
    holder = a if watching[a] else b
    other = b if holder is a else a
    holder.stop(kill=True)
    files = write_instances(tmp_path / "staging" / "st", 3, patient_id="SH")
    os.rename(tmp_path / "staging" / "st", inbox / "st")
    wait_until(lambda: dest.sop_uids() == {p.stem for p in files}, 60, 0.5, what="the other router importing")
    assert other.get("/courier/imports")["imports"][0]["Watching"] is True
    assert other.get("/courier/tasks", destination="dest")["total"] == 1


def test_a_configuration_change_on_one_router_is_applied_by_the_other(cluster, tmp_path, postgres):
    import requests
    first, second = cluster.orthanc("first"), cluster.orthanc("second")
    modalities = {"first": first.as_modality()}
    (a, b), _ = two_routers(cluster, postgres, tmp_path, modalities, [{"Name": "r", "Destinations": ["first"]}])
    assert a.get("/courier/config")["Version"] == b.get("/courier/config")["Version"] == 1   # one seed, not two
    answer = requests.put(a.url + "/courier/config/modalities/second", json={"Entry": second.as_modality()}, timeout=30)
    assert answer.status_code == 200, answer.text
    answer = requests.put(a.url + "/courier/config/routes/r", json={"Entry": {"Destinations": ["second"]}}, timeout=30)
    assert answer.status_code == 200, answer.text
    wait_until(lambda: b.get("/courier/config")["Version"] == 3, 15, what="router b on version 3")
    assert "second" in b.get("/modalities")                  # b's Orthanc knew the node a added before b took it
    files = write_instances(tmp_path / "in", 4)
    storescu(b.dicom_port, files[:2])
    storescu(a.dicom_port, files[2:])
    wait_until(lambda: second.sop_uids() == {f.stem for f in files}, 40, what="all four at second, from either router")
    assert first.sop_uids() == set()


def test_edits_on_two_routers_without_a_base_both_stay(cluster, tmp_path, postgres):
    import requests
    first, second = cluster.orthanc("first"), cluster.orthanc("second")
    (a, b), _ = two_routers(cluster, postgres, tmp_path, {"first": first.as_modality()},
                            [{"Name": "r", "Destinations": ["first"]}])
    one = requests.put(a.url + "/courier/config/modalities/second", json={"Entry": second.as_modality()}, timeout=30)
    two = requests.put(b.url + "/courier/config/folders/f", json={"Entry": {"Path": str(tmp_path / "f")}}, timeout=30)
    assert one.status_code == two.status_code == 200, (one.text, two.text)       # b had not polled version 2 yet
    document = a.get("/courier/config/versions/3")["Document"]
    assert "second" in document["DicomModalities"] and "f" in document["Courier"]["Folders"]
