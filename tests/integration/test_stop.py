"""A graceful stop ends within seconds even while a destination hangs, and leaves nothing RUNNING:
through `make run` (signalled alone or with its process group) and for a plain Orthanc."""
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from factory import write_instances
from harness import REPO, BlackHole, Orthanc, storescu, wait_until


def hung_router(tmp_path, hole):
    node = Orthanc(tmp_path, "router", courier={
        "AllowedCallers": "Any", "Workers": 2, "MaxWorkersPerDestination": 2, "BatchSize": 1,
        "Routes": [{"Name": "to-hole", "Destinations": ["hole"]}]},
        extra={"DicomScuTimeout": 4, "DicomModalities": {"hole": {"AET": "HOLE", "Host": "127.0.0.1", "Port": hole.port}}})
    return node


def running_tasks(database):
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())


@pytest.mark.parametrize("whom", ["make", "group"])
def test_make_run_stops_gracefully_within_10_s_while_a_destination_hangs(tmp_path, whom):
    hole = BlackHole()
    node = hung_router(tmp_path, hole)
    config = node.write_config()
    log = open(node.log_path, "ab")
    make = subprocess.Popen(["make", "-s", "run", f"CONFIG={config}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, COURIER_VENV=str(REPO / ".venv")), start_new_session=True)
    log.close()
    try:
        wait_until(lambda: node.get("/courier/health")["status"] == "ok", 60, 0.3, what="make run to serve")
        storescu(node.dicom_port, write_instances(tmp_path / "in", 4))
        wait_until(lambda: hole.open_now() == 2, 20, what="two sends hanging")
        started = time.monotonic()
        if whom == "make":
            make.send_signal(signal.SIGTERM)
        else:
            os.killpg(make.pid, signal.SIGTERM)          # what a terminal or a supervisor does
        make.wait(20)
        elapsed = time.monotonic() - started
        orthanc_log = node.log_path.read_text(errors="replace")
        assert "Orthanc has stopped" in orthanc_log, (make.returncode, orthanc_log[-3000:])
        assert "Courier stopped: 0 task(s) left RUNNING" in orthanc_log
        assert elapsed < 10, elapsed
        states = running_tasks(node.dir / "storage" / "courier.sqlite")
        assert "RUNNING" not in states and states.get("PENDING") == 4
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        hole.close()


def test_a_second_sigterm_during_couriers_stop_does_not_cut_it_short(cluster, tmp_path):
    """Orthanc 1.10.1 gives SIGTERM back its default action before it tells the plugins to stop:
    without Courier holding it, a second one (a supervisor's, a second Ctrl-C) kills Orthanc at once."""
    hole = BlackHole()
    try:
        node = hung_router(tmp_path, hole)
        cluster.nodes.append(node)
        node.start()
        storescu(node.dicom_port, write_instances(tmp_path / "in", 3))
        wait_until(lambda: hole.open_now() == 2, 20, what="two sends hanging")
        node.signal()
        wait_until(lambda: "Courier stopping" in node.log_path.read_text(errors="replace"), 10, 0.02,
                   what="Courier's stop to begin")
        node.signal()
        assert node.process.wait(15) == 0, node.log_tail()
        log = node.log_path.read_text(errors="replace")
        assert "Courier stopped: 0 task(s) left RUNNING" in log and "Orthanc has stopped" in log, node.log_tail()
        assert running_tasks(node.dir / "storage" / "courier.sqlite") == {"PENDING": 3}
    finally:
        hole.close()


def test_a_plain_sigterm_leaves_nothing_running_and_the_work_resumes(cluster, tmp_path):
    hole = BlackHole()
    try:
        node = hung_router(tmp_path, hole)
        cluster.nodes.append(node)
        node.start()
        files = write_instances(tmp_path / "in", 3)
        storescu(node.dicom_port, files)
        wait_until(lambda: hole.open_now() == 2, 20, what="two sends hanging")
        started = time.monotonic()
        node.stop()
        assert time.monotonic() - started < 10
        assert "RUNNING" not in running_tasks(node.dir / "storage" / "courier.sqlite")
    finally:
        hole.close()
    good = cluster.orthanc("good")                      # the destination is back, at another address
    node.config["DicomModalities"]["hole"] = good.as_modality()
    node.start()
    wait_until(lambda: good.sop_uids() == {p.stem for p in files}, 30, what="everything delivered after the restart")
    # the destination has them a moment before the worker records its outcome
    wait_until(lambda: {t["state"] for t in node.get("/courier/tasks")["tasks"]} == {"SUCCESS"}, 15,
               what="every task recorded SUCCESS")
    tasks = node.get("/courier/tasks")["tasks"]
    assert max(t["attempts"] for t in tasks) <= 2       # a stop is not counted as a failed attempt
