"""Start-up errors, partial deliveries, authentication, the REST API as documented, metrics."""
import subprocess
import time
from pathlib import Path

import pytest
import requests
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from factory import write_instances
from harness import Orthanc, free_port, storescu, wait_until

FAST_RETRY = {"MaxAttempts": 2, "InitialDelaySeconds": 0.2, "MaxDelaySeconds": 0.5}


@pytest.mark.parametrize("courier,expected", [
    ({"Workrs": 2}, "Courier configuration error at Courier.Workrs: unknown key (hint: did you mean 'Workers'?)"),
    ({"Retry": {"MaxAttempts": "3"}},
     "Courier configuration error at Courier.Retry.MaxAttempts: expected an integer, got a string"),
    ({"Routes": [{"Name": "r", "Destinations": ["nowhere"]}]},
     "Courier configuration error at Courier.Routes[0].Destinations[0]: no destination named 'nowhere'"),
    ({"Routes": [{"Name": "r", "Destinations": ["d"], "Condition": "missing.py"}]},
     "Courier configuration error at Courier.Routes[0].Condition: script 'missing.py' not found"),
])
def test_a_bad_courier_section_stops_orthanc_with_one_clear_message(tmp_path, courier, expected):
    node = Orthanc(tmp_path, "router", courier=courier,
                   extra={"DicomModalities": {"d": ["D", "127.0.0.1", 104]}})
    node.write_config()
    result = subprocess.run(["Orthanc", str(node.dir / "orthanc.json")], capture_output=True, text=True,
                            timeout=60, cwd=node.dir)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


def refusing_scp(port, refuse_even=True):
    """A pynetdicom storage SCP that refuses instances with an even InstanceNumber."""
    received = []

    def on_store(event):
        ds = event.dataset
        if refuse_even and int(ds.InstanceNumber) % 2 == 0:
            return 0xA700
        received.append(ds.SOPInstanceUID)
        return 0x0000
    ae = AE(ae_title="PICKY")
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    return server, received


def test_partial_delivery_ends_in_warning_with_the_missing_uids(cluster, tmp_path):
    port = free_port()
    server, received = refusing_scp(port)
    try:
        node = cluster.orthanc("router", courier={
            "AllowedCallers": "Any", "Retry": FAST_RETRY,
            "Routes": [{"Name": "r", "Trigger": "StableSeries", "Destinations": ["picky"]}]},
            extra={"DicomModalities": {"picky": {"AET": "PICKY", "Host": "127.0.0.1", "Port": port}}})
        files = write_instances(tmp_path / "in", 4)
        storescu(node.dicom_port, files)
        task = wait_until(lambda: (t := node.get("/courier/tasks")["tasks"]) and t[0]["state"] == "WARNING" and t[0],
                          40, what="a WARNING task")
        task = node.get(f"/courier/tasks/{task['id']}")
        refused = {p.stem for i, p in enumerate(files, start=1) if i % 2 == 0}
        assert (task["expected"], task["delivered"], task["attempts"]) == (4, 2, 2)
        assert set(task["missing"]) == refused
        assert set(received) == {p.stem for p in files} - refused
        assert "2 instance(s) not delivered" in task["last_error"]
        metrics = requests.get(node.url + "/tools/metrics-prometheus", timeout=10).text
        wait_until(lambda: "courier_failed_instances_picky 4" in
                   requests.get(node.url + "/tools/metrics-prometheus", timeout=10).text, 15, what="metrics")
        assert "courier_tasks_warning" in metrics
    finally:
        server.shutdown()


def test_authentication_applies_and_workers_still_deliver(cluster, tmp_path):
    dest = cluster.orthanc("dest", start=False)
    node = Orthanc(tmp_path, "router", courier={"AllowedCallers": "Any",
                                                "Retry": {"InitialDelaySeconds": 0.2, "MaxDelaySeconds": 0.5},
                                                "Users": {"alice": {"Role": "admin"}},
                                                "Routes": [{"Name": "r", "Destinations": ["dest"]}]},
                   extra={"AuthenticationEnabled": True, "RegisteredUsers": {"alice": "secret"},
                          "DicomModalities": {"dest": dest.as_modality()}})
    cluster.nodes.append(node)
    node.start()
    auth = node.auth
    assert auth == ("alice", "secret")
    for path in ("/courier/health", "/courier/status", "/courier/tasks", "/courier/audit", "/courier/openapi.json"):
        assert requests.get(node.url + path, timeout=5).status_code == 401, path
        assert requests.get(node.url + path, auth=("alice", "wrong"), timeout=5).status_code == 401, path
    assert requests.post(node.url + "/courier/tasks/1/cancel", timeout=5).status_code == 401
    storescu(node.dicom_port, write_instances(tmp_path / "in", 2))
    wait_until(lambda: len(node.get("/courier/tasks")["tasks"]) == 2, 20, what="2 tasks")
    task_id = node.get("/courier/tasks")["tasks"][0]["id"]
    assert requests.post(node.url + f"/courier/tasks/{task_id}/cancel", auth=auth, timeout=5).status_code == 415
    assert requests.post(node.url + f"/courier/tasks/{task_id}/cancel", auth=auth, timeout=5,
                         data="x", headers={"Content-Type": "text/plain"}).status_code == 415   # what a form can send
    assert requests.post(node.url + f"/courier/tasks/{task_id}/cancel", auth=auth, json={}, timeout=5).status_code == 200
    entries = node.get("/courier/audit", action="task-cancelled")["entries"]
    assert [(e["actor"], e["task_id"]) for e in entries] == [("alice", task_id)]
    dest.start()
    wait_until(lambda: len(dest.instances()) == 1, 20, what="delivery by workers using Orthanc's token")


def test_openapi_document_matches_the_served_routes(cluster):
    node = cluster.orthanc("router", courier={})
    document = node.get("/courier/openapi.json")
    assert document["openapi"].startswith("3.")
    for path, methods in document["paths"].items():
        concrete = path.replace("{id}", "999999")
        for method, spec in methods.items():
            response = requests.request(method.upper(), node.url + concrete, timeout=5,
                                        **({} if method == "get" else {"json": {}}))
            if spec["x-courier-role"] == "internal":          # Orthanc's own calls only: refused unread
                assert response.status_code == 403 and response.text == "", (method, path)
                continue
            if response.status_code == 200:
                continue                                  # JSON, CSV or DICOM: served
            body = response.json()
            # otherwise a Courier JSON error about the input, never an unknown route
            assert body.get("status") == response.status_code and not body["error"].startswith("no route"), \
                (method, path, body)
    unknown = requests.get(node.url + "/courier/not-a-route", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["error"] == "no route /courier/not-a-route"


def test_cancel_and_retry_through_the_api_during_an_outage(cluster, tmp_path):
    dest = cluster.orthanc("dest", start=False)
    node = cluster.orthanc("router", courier={"AllowedCallers": "Any",
                                              "Retry": {"InitialDelaySeconds": 0.2, "MaxDelaySeconds": 0.5},
                                              "Routes": [{"Name": "r", "Destinations": ["dest"]}]},
                           extra={"DicomModalities": {"dest": dest.as_modality()}})
    files = write_instances(tmp_path / "in", 2)
    storescu(node.dicom_port, files)
    wait_until(lambda: len(node.get("/courier/tasks")["tasks"]) == 2, 20, what="2 tasks")
    first, second = sorted(t["id"] for t in node.get("/courier/tasks")["tasks"])
    assert node.post(f"/courier/tasks/{first}/cancel").json()["state"] == "CANCELED"
    dest.start()
    wait_until(lambda: node.get(f"/courier/tasks/{second}")["state"] == "SUCCESS", 20, what="second delivered")
    assert len(dest.instances()) == 1 and node.get(f"/courier/tasks/{first}")["state"] == "CANCELED"
    assert node.post(f"/courier/tasks/{first}/retry").json()["state"] == "PENDING"
    wait_until(lambda: len(dest.instances()) == 2, 20, what="cancelled task delivered after retry")
    # the outcome is recorded a moment after the destination acknowledged
    wait_until(lambda: (s := node.get("/courier/status"))["queue"]["SUCCESS"] == 2
               and s["destinations"]["dest"]["delivered_instances"] == 2, 15, what="both recorded delivered")


def test_tasks_are_retried_cancelled_and_reprioritised_in_bulk_and_exported(cluster, tmp_path):
    import csv
    import io

    import requests
    node = cluster.orthanc("router", courier={"AllowedCallers": "Any", "Retry": {"MaxAttempts": 1},
                                              "Routes": [{"Name": "nowhere", "Destinations": ["nobody"]}]},
                           extra={"DicomModalities": {"nobody": ["NOBODY", "127.0.0.1", free_port()]}})
    storescu(node.dicom_port, write_instances(tmp_path / "s", 4, patient_id="B1"))
    wait_until(lambda: node.get("/courier/tasks", state="FAILURE")["total"] == 4, 30, what="four failed tasks")
    exported = requests.get(f"{node.url}/courier/tasks.csv", params={"state": "FAILURE"}, timeout=10)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert exported.headers["Content-Type"].startswith("text/csv") and len(rows) == 4
    assert {r["route"] for r in rows} == {"nowhere"} and all(r["last_error"] for r in rows) and "B1" not in exported.text
    retried = node.post("/courier/tasks/bulk", {"Action": "retry", "Filter": {"state": "FAILURE", "route": "nowhere"}})
    assert retried.status_code == 200 and retried.json()["Changed"] == 4, retried.text
    wait_until(lambda: node.get("/courier/tasks", state="FAILURE")["total"] == 4, 30, what="failed again")
    some = [t["id"] for t in node.get("/courier/tasks", state="FAILURE")["tasks"]][:2]
    assert node.post("/courier/tasks/bulk", {"Action": "retry", "Ids": some}).json()["Changed"] == 2
    cancelled = node.post("/courier/tasks/bulk", {"Action": "cancel", "Ids": some}).json()     # those still pending
    assert cancelled["Changed"] <= 2
    assert node.get("/courier/tasks", since=time.time() + 3600)["total"] == 0     # created between since and until
    assert node.get("/courier/tasks", until=time.time() + 3600)["total"] == 4
    bad = node.post("/courier/tasks/bulk", {"Action": "retry"})
    assert bad.status_code == 400 and "Ids: give Ids" in bad.json()["error"]
    bad = node.post("/courier/tasks/bulk", {"Action": "priority", "Ids": some})
    assert bad.status_code == 400 and "Priority" in bad.json()["error"]
    actions = {e["action"] for e in node.get("/courier/audit", limit=100)["entries"]}
    assert {"task-bulk-retry"} <= actions


def test_the_dashboard_counts_what_came_and_went_and_echoes_every_node(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", courier={"AllowedCallers": "Any", "EchoIntervalSeconds": 1,
                                              "Routes": [{"Name": "each", "Destinations": ["dest"]}]},
                           extra={"DicomModalities": {"dest": dest.as_modality(), "down": ["DOWN", "127.0.0.1", free_port()]}})
    files = write_instances(tmp_path / "s", 3, patient_id="DB")
    storescu(node.dicom_port, files)
    wait_until(lambda: len(dest.instances()) == 3, 30, what="the instances delivered")
    board = wait_until(lambda: (b := node.get("/courier/dashboard"))["Hours"][-1]["delivered"] == 3 and
                       {n["Id"]: n["State"] for n in b["Nodes"]} == {"dest": "green", "down": "red"} and b, 30, 0.5,
                       what="the deliveries counted and both nodes echoed")
    assert board["ReceivedToday"] == 3 and board["Hours"][-1]["received"] == 3 and len(board["Hours"]) == 24
    assert board["Hours"][-1]["bytes"] > 0 and board["Hours"][-1]["latency_p95"] >= board["Hours"][-1]["latency_p50"] > 0
    assert board["Storage"]["UsedBytes"] > 0 and board["Storage"]["FreeBytes"] > 0 and board["UptimeSeconds"] >= 0
    assert board["Routes"] == [{"Name": "each", "Trigger": "Instance", "Destinations": ["dest"], "Callers": []}]
    assert len(board["Days"]) >= 1 and board["Days"][-1]["delivered"] == 3
    def published():
        text = requests.get(node.url + "/tools/metrics-prometheus", timeout=10).text
        found = dict(line.split()[:2] for line in text.splitlines() if line.startswith("courier_"))
        return "courier_node_up_down" in found and float(found["courier_received_instances_this_hour"]) == 3 and found
    values = wait_until(published, 20, 0.5, what="the metrics published (every 5 s)")
    assert float(values["courier_node_up_dest"]) == 1 and float(values["courier_node_up_down"]) == 0
    assert float(values["courier_received_instances_this_hour"]) == 3 and "courier_queue_wait_seconds" in values
    echoes = node.get("/courier/audit", action="node-echoed")["entries"]
    assert len(echoes) == 2                                 # periodic echoes audit a change of state only
    # top -H tells Courier's threads from Orthanc's (courier/threads.py)
    names = {open(task / "comm").read().strip() for task in Path(f"/proc/{node.process.pid}/task").iterdir()}
    assert {"courier-changes", "c-worker-0", "c-heartbeat", "courier-echoes", "courier-metrics", "Orthanc"} <= names


def test_what_is_older_than_retention_days_is_pruned_by_the_router(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", courier={"AllowedCallers": "Any", "HeartbeatTimeoutSeconds": 4,
                                              "Routes": [{"Name": "each", "Destinations": ["dest"]}]},
                           extra={"DicomModalities": {"dest": dest.as_modality()}})
    storescu(node.dicom_port, write_instances(tmp_path / "s", 2, patient_id="RT"))
    wait_until(lambda: node.get("/courier/tasks", state="SUCCESS")["total"] == 2, 30, what="two delivered tasks")
    time.sleep(1.5)
    node.stop()
    node.config["Courier"]["RetentionDays"] = 1 / 86400               # one second
    node.start()
    pruned = wait_until(lambda: node.get("/courier/audit", action="retention-pruned")["entries"], 20, 0.5,
                        what="the hourly pruning, first run soon after start")
    assert pruned[0]["detail"]["tasks"] == 2 and node.get("/courier/tasks")["total"] == 0
    assert requests.get(f"{node.url}/courier/ui/audit", timeout=10).text.count('id="retention"') == 1
