"""The DICOM traffic log against a real Orthanc 1.10.1: a C-STORE burst of a known modality with its
instance count and bytes, counted once through a kill -9; a refused caller; a C-FIND served (through
Courier's Lua script, whose query goes on unchanged); the internal route refused to HTTP clients; the
CSV; and the Traffic page in Chromium."""
import json
import subprocess
import time
from pathlib import Path

import requests
from test_ui import SHOTS, USERS, browser, page_for  # noqa: F401 - browser: the module's Chromium fixture

from factory import write_instances
from harness import Orthanc, storescu, wait_until


def router(cluster, tmp_path, users=None, **extra):
    modality_port = 11112           # nobody listens: the modality is only declared, never called
    node = Orthanc(tmp_path, "router", courier={"AllowedCallers": "KnownModalities", **({"Users": users} if users else {})},
                   extra={"DicomModalities": {"ct": {"AET": "CTSCANNER", "Host": "127.0.0.1", "Port": modality_port}},
                          **extra})
    cluster.nodes.append(node)
    return node.start()


def findscu(port, calling, called, *keys):
    args = ["findscu", "-aet", calling, "-aec", called, "-S", "-k", "QueryRetrieveLevel=STUDY"]
    for key in keys:
        args += ["-k", key]
    return subprocess.run([*args, "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)


def rows(node, **filters):
    return node.get("/courier/traffic", **filters)["entries"]


def test_c_stores_refusals_and_c_finds_served_are_in_the_traffic_log(cluster, tmp_path):
    node = router(cluster, tmp_path)
    files = write_instances(tmp_path / "ct", 3, patient_id="TRAFFIC-PID", patient_name="Secret^Patient")
    storescu(node.dicom_port, files, calling="CTSCANNER", called=node.aet)
    stored = wait_until(lambda: [r for r in rows(node, service="C-STORE", status="accepted") if r["Instances"] == 3],
                        30, what="the C-STORE burst in the traffic log")
    row = stored[0]
    assert (row["CallingAet"], row["CalledAet"], row["RemoteIp"], row["Operations"]) == ("CTSCANNER", node.aet,
                                                                                        "127.0.0.1", 3)
    sizes = sum(i["FileSize"] for i in node.get("/instances", expand=""))
    assert row["Bytes"] == sizes > 0

    for attempt in ("x1", "x2"):        # storescu gives up at the first refusal; its retry a moment later: one row
        storescu(node.dicom_port, write_instances(tmp_path / attempt, 2), calling="INTRUDER", called=node.aet,
                 check=False)
    wait_until(lambda: [r for r in rows(node, status="refused") if r["Operations"] == 2], 30, what="the refusals")
    [row] = rows(node, status="refused")
    assert (row["CallingAet"], row["Service"], row["Instances"]) == ("INTRUDER", "C-STORE", 2)
    assert "not declared" in row["Detail"] and row["RemoteIp"] == ""       # the C-STORE filter is not told the IP

    found = findscu(node.dicom_port, "CTSCANNER", node.aet, "PatientName=Secret*", "StudyInstanceUID")
    assert found.returncode == 0, found.stderr
    assert "Secret^Patient" in found.stderr + found.stdout           # the Lua filter gave the query back unchanged
    finds = wait_until(lambda: rows(node, service="C-FIND"), 30, what="the C-FIND served")
    assert len(finds) == 1
    assert (finds[0]["CallingAet"], finds[0]["CalledAet"], finds[0]["RemoteIp"], finds[0]["Status"],
            finds[0]["Detail"], finds[0]["Operations"]) == ("CTSCANNER", node.aet, "127.0.0.1", "accepted", "STUDY", 1)

    # only Orthanc's internal calls (the Lua script) reach the event route, however it is written
    for uri in ("/courier/traffic/events", "/courier//traffic/events", "/courier/traffic/events/",
                "/courier/traffic%2Fevents"):
        answer = requests.post(node.url + uri, json={"Service": "C-FIND", "CallingAet": "FORGED"}, timeout=10)
        assert answer.status_code in (403, 404), (uri, answer.status_code)
    assert [r["CallingAet"] for r in rows(node, service="C-FIND")] == ["CTSCANNER"]

    everything = node.get("/courier/traffic")
    assert everything["total"] == 3
    text = str(everything) + requests.get(node.url + "/courier/traffic.csv", timeout=10).text
    assert "Secret" not in text and "TRAFFIC-PID" not in text       # no patient name or ID, anywhere
    csv = requests.get(node.url + "/courier/traffic.csv", params={"status": "refused"}, timeout=10)
    assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("id,first_at,last_at,service,calling_aet")
    assert len(csv.text.splitlines()) == 2 and "INTRUDER" in csv.text
    assert node.get("/courier/traffic", caller="CTSCANNER")["total"] == 2
    assert node.get("/courier/traffic", limit=1, offset=2)["entries"][0]["Id"] not in \
        [r["Id"] for r in node.get("/courier/traffic", limit=2)["entries"]]

    # a kill -9 right after a burst: counted exactly once when the router comes back
    more = write_instances(tmp_path / "ct2", 4, patient_id="TRAFFIC-2")
    storescu(node.dicom_port, more, calling="CTSCANNER", called=node.aet)
    node.stop(kill=True)
    node.start()
    wait_until(lambda: sum(r["Instances"] for r in rows(node, service="C-STORE", status="accepted")) == 7, 30,
               what="the second burst, after the kill")
    time.sleep(2)                                                     # the follower re-read what it had not committed
    assert sum(r["Instances"] for r in rows(node, service="C-STORE", status="accepted")) == 7


def test_the_traffic_page_shows_a_refused_caller_and_a_c_find_served(cluster, tmp_path, browser):  # noqa: F811
    node = router(cluster, tmp_path, users={"alice": {"Role": "admin"}, "carol": {"Role": "viewer"}},
                  AuthenticationEnabled=True, RegisteredUsers=USERS)
    storescu(node.dicom_port, write_instances(tmp_path / "x", 2), calling="INTRUDER", called=node.aet, check=False)
    storescu(node.dicom_port, write_instances(tmp_path / "ct", 2), calling="CTSCANNER", called=node.aet)
    assert findscu(node.dicom_port, "CTSCANNER", node.aet, "PatientID").returncode == 0
    wait_until(lambda: node.get("/courier/traffic")["total"] == 3, 30, what="three rows")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = page_for(browser, "carol")                                 # a viewer may read it, like the audit trail
    page.goto(node.url + "/courier/ui/")
    page.click("nav >> text=Traffic")
    page.wait_for_url("**/courier/ui/traffic*")                       # a page of its own: wait for it, then count
    page.wait_for_selector("#traffic tr[data-status]", timeout=10000)
    refused = page.locator("#traffic tr[data-status='refused']")
    assert refused.count() == 1
    assert refused.locator(".caller").inner_text() == "INTRUDER"
    assert "not declared" in refused.locator(".detail").inner_text()
    found = page.locator("#traffic tr[data-service='C-FIND']")
    assert found.count() == 1 and found.locator(".caller").inner_text() == "CTSCANNER"
    assert found.locator(".status").inner_text() == "accepted"
    page.screenshot(path=str(SHOTS / "traffic.png"), full_page=True)
    page.select_option("select[name=service]", "C-FIND")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/traffic?*service=C-FIND*")
    assert page.locator("#traffic tr[data-service]").count() == 1
    assert page.locator("#count").inner_text().startswith("1 row")
    page.select_option("select[name=service]", "")
    page.select_option("select[name=status]", "refused")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**/traffic?*status=refused*")
    assert [t for t in page.locator("#traffic tr[data-status] .caller").all_inner_texts()] == ["INTRUDER"]
    href = page.locator("#export").get_attribute("href")
    assert href.endswith("traffic.csv?status=refused")
    csv = page.request.get(page.url.rsplit("/ui/", 1)[0] + "/traffic.csv?status=refused")
    assert csv.status == 200 and "INTRUDER" in csv.text()
    Path(SHOTS / "traffic.csv").write_text(csv.text())


def test_a_c_move_served_is_in_the_traffic_log_when_orthanc_runs_it_as_a_job(cluster, tmp_path):
    dest = cluster.orthanc("dest")
    node = Orthanc(tmp_path, "router", courier={"AllowedCallers": "Any"},
                   extra={"SynchronousCMove": False, "DicomModalities": {
                       "mover": {"AET": "MOVER", "Host": "127.0.0.1", "Port": 11113}, "dest": dest.as_modality()}})
    cluster.nodes.append(node)
    node.start()
    files = write_instances(tmp_path / "ct", 2, patient_id="MOVED-PID")
    storescu(node.dicom_port, files, calling="MOVER", called=node.aet)
    moved = subprocess.run(["movescu", "-aet", "MOVER", "-aec", node.aet, "-aem", dest.aet, "-S", "-k",
                            "QueryRetrieveLevel=PATIENT", "-k", "PatientID=MOVED-PID", "127.0.0.1", str(node.dicom_port)],
                           capture_output=True, text=True, timeout=60)
    assert moved.returncode == 0, moved.stderr
    wait_until(lambda: len(dest.instances()) == 2, 30, what="the moved instances at dest")
    [row] = wait_until(lambda: rows(node, service="C-MOVE"), 30, what="the C-MOVE served")
    assert (row["CallingAet"], row["CalledAet"], row["Instances"], row["Detail"]) == ("MOVER", node.aet, 2, f"to {dest.aet}")
    assert "MOVED-PID" not in json.dumps(node.get("/courier/traffic"))
    wait_until(lambda: rows(node, service="C-STORE", status="accepted"), 20, what="the upload, as before")
