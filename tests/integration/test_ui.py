"""The web UI in a real headless Chromium (Debian's), driven by Playwright; screenshots go to
test-output/ui/ for a person to look at."""
import json
from pathlib import Path

import pytest
import requests

from factory import write_instances
from harness import Orthanc, storescu, wait_until

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "ui"
USERS = {"alice": "alice-pw", "carol": "carol-pw"}
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def courier(cluster, tmp_path, **extra_courier):
    pacs = cluster.orthanc("pacs", start=False)
    dest = cluster.orthanc("dest")
    node = Orthanc(tmp_path, "router", courier={"AllowedCallers": "Any", "Users": {"alice": {"Role": "admin"},
                                                                                   "carol": {"Role": "viewer"}},
                                                **extra_courier},
                   extra={"AuthenticationEnabled": True, "RegisteredUsers": USERS,
                          "DicomModalities": {"pacs": pacs.as_modality(), "dest": dest.as_modality()}})
    cluster.nodes.append(node)
    pacs.config["DicomModalities"] = {"router": node.as_modality()}
    pacs.start()
    node.start()
    return node, pacs, dest


def wait_for_job(page, status, timeout=60000):
    """The job page once it has settled (job.js reloads it when the job ends): no race with the reload."""
    page.wait_for_selector("body[data-settled='1']", timeout=timeout)
    assert page.locator("#status").inner_text() == status


def page_for(browser, user):
    context = browser.new_context(http_credentials={"username": user, "password": USERS[user]} if user else None)
    return context.new_page()


def test_dashboard_jobs_and_a_job_reaching_100_percent(cluster, tmp_path, browser):
    node, pacs, dest = courier(cluster, tmp_path)
    SHOTS.mkdir(parents=True, exist_ok=True)
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 4, patient_id="PU"))
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/")
    assert page.locator("#health").inner_text() == "running"
    assert page.locator("#queue td[data-state='SUCCESS']").inner_text() == "0"
    echoed = requests.post(node.url + "/courier/nodes/dest/echo", auth=("alice", USERS["alice"]), json={}, timeout=30)
    assert echoed.status_code == 200, echoed.text
    page.goto(node.url + "/courier/ui/")                # a destination without tasks yet is listed, with its echo
    cells = {row[0]: row for row in (r.split("\t") for r in page.locator("#destinations tr").all_inner_texts()[1:])}
    assert cells["dest"][-1] == "ok" and cells["pacs"][-1] == "-", cells
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    job = requests.post(node.url + "/courier/jobs", auth=("alice", USERS["alice"]), timeout=30,
                        json={"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "PU"}]}).json()
    page.goto(node.url + "/courier/ui/jobs")
    page.click(f"text=#{job['Id']}")
    wait_for_job(page, 'SUCCESS', timeout=60000)
    page.wait_for_function("document.getElementById('percent').textContent === '100%'", timeout=10000)
    assert page.locator("#tasks td", has_text="SUCCESS").count() == 1
    assert page.locator("button[data-action]").count() == 0       # nothing to do with a finished job
    page.screenshot(path=str(SHOTS / "job.png"), full_page=True)
    page.goto(node.url + "/courier/ui/jobs")
    assert page.locator("#jobs .status").first.inner_text() == "SUCCESS"
    page.screenshot(path=str(SHOTS / "jobs.png"), full_page=True)
    page.goto(node.url + "/courier/ui/")
    assert page.locator("#queue td[data-state='SUCCESS']").inner_text() == "1"


def test_buttons_act_through_the_api_with_the_csrf_token(cluster, tmp_path, browser):
    import datetime
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[(datetime.datetime.now().weekday() + 3) % 7]
    node, pacs, _ = courier(cluster, tmp_path, Nodes={"pacs": {"Windows": [f"{day} 00:00-01:00"]}})
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 1, patient_id="PH"))
    job = requests.post(node.url + "/courier/jobs", auth=("alice", USERS["alice"]), timeout=30,
                        json={"Source": "pacs", "Destination": "dest", "Items": [{"PatientID": "PH"}]}).json()
    page = page_for(browser, "alice")
    page.goto(node.url + f"/courier/ui/jobs/{job['Id']}")
    assert page.locator("#status").inner_text() == "WAITING_FOR_WINDOW"
    assert sorted(page.locator("button[data-action]").all_inner_texts()) == ["Cancel", "Pause"]
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("button[data-action='cancel']")                    # asked first; dismissed: nothing happens
    page.wait_for_timeout(500)
    assert asked and "Cancel this job?" in asked[0] and page.locator("#status").inner_text() == "WAITING_FOR_WINDOW"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button[data-action='cancel']")
    wait_for_job(page, 'CANCELED', timeout=10000)
    assert page.locator("button[data-action]").all_inner_texts() == ["Retry"]
    entries = requests.get(node.url + "/courier/audit", params={"action": "job-cancel"}, auth=("alice", USERS["alice"]),
                           timeout=10).json()["entries"]
    assert [e["actor"] for e in entries] == ["alice"]
    forged = requests.post(node.url + f"/courier/jobs/{job['Id']}/retry", auth=("alice", USERS["alice"]), json={},
                           headers={"X-Courier-CSRF": "not-the-token"}, timeout=10)
    assert forged.status_code == 403
    viewer = page_for(browser, "carol")
    viewer.goto(node.url + f"/courier/ui/jobs/{job['Id']}")
    assert viewer.locator("button[data-action]").count() == 0          # a viewer gets no buttons
    assert requests.get(node.url + "/courier/ui/", timeout=10).status_code == 401     # no login, no page


def test_explorer_query_shows_markup_as_text_and_starts_a_transfer(cluster, tmp_path, browser):
    node, pacs, dest = courier(cluster, tmp_path)
    SHOTS.mkdir(parents=True, exist_ok=True)
    evil = '<script>alert(1)</script>^O\'Brien "Bob"'
    files = write_instances(tmp_path / "s", 2, patient_id="PX1", patient_name=evil)
    storescu(pacs.dicom_port, files + write_instances(tmp_path / "o", 1, patient_id="OTHER"))
    page = page_for(browser, "alice")
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(node.url + "/courier/ui/explorer")
    page.select_option("select[name=Node]", "pacs")
    page.fill("input[name=PatientID]", "PX1")
    page.click("#query button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent !== 'querying...'", timeout=30000)
    assert page.locator("#message").inner_text() == "1 found"
    assert page.locator("#answers td", has_text="<script>alert(1)</script>").count() == 1
    assert page.evaluate("document.querySelectorAll('#answers script').length") == 0 and dialogs == []
    page.screenshot(path=str(SHOTS / "explorer.png"), full_page=True)
    page.check("#answers tbody input[type=checkbox]")
    page.click("#transfer button[type=submit]")
    page.wait_for_url("**/courier/ui/jobs/*", timeout=30000)
    wait_for_job(page, 'SUCCESS', timeout=60000)
    assert dest.sop_uids() == {p.stem for p in files}


def test_nodes_audit_and_quarantine_pages(cluster, tmp_path, browser):
    (tmp_path / "key").write_text("ui-secret-0123456789")
    node, pacs, dest = courier(cluster, tmp_path, QuarantineDirectory=str(tmp_path / "q"),
                               Pseudonymization={"p": {"SecretFile": str(tmp_path / "key")}},
                               Routes=[{"Name": "us", "Match": {"Modality": "US"}, "Pseudonymize": "p",
                                        "PseudonymizeOn": "Ingest", "Destinations": ["dest"]}])
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/nodes")
    assert page.locator("tr[data-node=pacs] .echo").inner_text() == "never"
    page.click("tr[data-node=pacs] button")
    page.wait_for_function("document.querySelector('tr[data-node=pacs] .echo')?.textContent === 'ok'", timeout=20000)
    page.screenshot(path=str(SHOTS / "nodes.png"), full_page=True)
    page.goto(node.url + "/courier/ui/audit?actor=alice")
    assert page.locator("#audit td", has_text="node-echoed").count() == 1
    page.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
    exported = requests.get(node.url + "/courier/ui/" + page.locator("#export").get_attribute("href"),
                            auth=("alice", USERS["alice"]), timeout=10)
    assert exported.text.splitlines()[0].startswith("id,at,actor,action") and "node-echoed" in exported.text
    storescu(node.dicom_port, write_instances(tmp_path / "us", 1, modality="US", patient_id="PQ"))
    page.goto(node.url + "/courier/ui/quarantine")
    assert page.locator("#quarantine td", has_text="burned-in").count() == 1
    kept = list((tmp_path / "q").glob("*.dcm"))
    assert len(kept) == 1
    viewer = page_for(browser, "carol")
    viewer.goto(node.url + "/courier/ui/quarantine")
    assert viewer.locator("#quarantine button").count() == 0
    assert [t.strip() for t in page.locator("#quarantine button").all_inner_texts()] == ["Release", "Delete"]
    page.screenshot(path=str(SHOTS / "quarantine.png"), full_page=True)
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#quarantine button:has-text('Delete')")           # asked first; dismissed: kept
    page.wait_for_timeout(500)
    assert kept[0].exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#quarantine button:has-text('Delete')")
    page.wait_for_function("document.querySelector('#quarantine td')?.textContent === 'nothing quarantined'", timeout=10000)
    assert not kept[0].exists()


def test_orthanc_explorer_buttons_open_the_send_page(cluster, tmp_path, browser):
    (tmp_path / "key").write_text("ui-secret-0123456789")
    node, pacs, dest = courier(cluster, tmp_path, Pseudonymization={"p": {"SecretFile": str(tmp_path / "key")}})
    files = write_instances(tmp_path / "s", 2, patient_id="PE", patient_name="Doe^Jane")
    storescu(node.dicom_port, files)
    study = wait_until(lambda: node.get("/studies"), 20, what="the study in Courier's Orthanc")[0]
    page = page_for(browser, "alice")
    page.goto(node.url + f"/app/explorer.html#study?uuid={study}")
    page.wait_for_selector("#courier-pseudonymize", timeout=20000)
    assert page.locator("#courier-send").get_attribute("href").endswith(f"courier/ui/send?study={study}")
    page.screenshot(path=str(SHOTS / "orthanc-explorer.png"), full_page=True)
    page.goto(node.url + "/app/" + page.locator("#courier-pseudonymize").get_attribute("href"))
    assert page.locator("#study td", has_text="Doe^Jane").count() == 1
    assert page.locator("select[name=Pseudonymize]").input_value() == "p"
    page.select_option("select[name=Destination]", "dest")
    page.click("#send button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('task ')", timeout=10000)
    page.screenshot(path=str(SHOTS / "send.png"), full_page=True)
    wait_until(lambda: len(dest.instances()) == 2, 30, what="the study sent")
    assert {dest.get(f"/instances/{i}/simplified-tags")["PatientName"] for i in dest.instances()} != {"Doe^Jane"}
    entries = node.get("/courier/audit", action="manual-send")["entries"]
    assert [(e["actor"], e["destination"]) for e in entries] == [("alice", "dest")]


def test_routes_page_rule_tester_with_a_file_and_with_tags(cluster, tmp_path, browser):
    (tmp_path / "key").write_text("ui-secret-0123456789")
    node, pacs, dest = courier(cluster, tmp_path, Pseudonymization={"p": {"SecretFile": str(tmp_path / "key")}},
                               Routes=[{"Name": "ct-pseudo", "Match": {"Modality": "CT"}, "Pseudonymize": "p",
                                        "Destinations": ["dest"]},
                                       {"Name": "rest", "Fallback": True, "Destinations": ["dest"]}])
    path = write_instances(tmp_path / "s", 1, patient_id="PR", patient_name="Doe^Jane")[0]
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/routes")
    assert page.locator("#routes td", has_text="ct-pseudo").count() == 1
    page.set_input_files("input[name=file]", str(path))
    page.click("#tester button[type=submit]")
    page.wait_for_selector("#fired li", timeout=10000)
    assert page.locator("#fired li").all_inner_texts() == ["ct-pseudo"]
    pseudonymized = dict(zip(page.locator(".pseudonymized th").all_inner_texts(),
                             page.locator(".pseudonymized td").all_inner_texts(), strict=True))
    assert pseudonymized["PatientIdentityRemoved"] == "YES" and pseudonymized["PatientID"] != "PR"
    assert "Doe" not in " ".join(pseudonymized.values())
    method = pseudonymized["DeidentificationMethod"]               # several values, as DICOM writes them
    assert method.startswith("Courier profile p\\PS3.15") and "[" not in method, method
    page.screenshot(path=str(SHOTS / "routes.png"), full_page=True)
    page.reload()
    page.fill("textarea[name=tags]", "Modality=MR\nCallingAet=SOMEONE")
    page.click("#tester button[type=submit]")
    page.wait_for_selector("#fired li", timeout=10000)
    assert page.locator("#fired li").all_inner_texts() == ["rest"]
    assert dest.instances() == []                       # testing sends nothing


def test_batch_page_reports_lines_then_starts(cluster, tmp_path, browser):
    import pydicom
    node, pacs, dest = courier(cluster, tmp_path)
    files = write_instances(tmp_path / "s", 2, patient_id="PB1")
    storescu(pacs.dicom_port, files)
    study = pydicom.dcmread(files[0]).StudyInstanceUID
    (tmp_path / "bad.csv").write_text(f"PatientID,StudyInstanceUID\nPB1,{study}\nPB2,not-a-uid\n")
    (tmp_path / "good.csv").write_text(f"ID;PatientID;StudyInstanceUID\nr1;PB1;{study}\n")
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/batch")
    page.select_option("select[name=Source]", "pacs")
    page.select_option("select[name=Destination]", "dest")
    page.set_input_files("input[name=file]", str(tmp_path / "bad.csv"))
    page.click("#batch button[type=submit]")
    page.wait_for_selector("#problems td", timeout=20000)
    assert page.locator("#problems tr").nth(1).locator("td").all_inner_texts() == [
        "3", "StudyInstanceUID", "not a UID (digits and dots, at most 64)"]
    assert page.locator("#start").is_disabled()
    page.screenshot(path=str(SHOTS / "batch.png"), full_page=True)
    page.set_input_files("input[name=file]", str(tmp_path / "good.csv"))
    page.click("#batch button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent === '1 rows, all valid'", timeout=20000)
    page.click("#start")
    page.wait_for_selector("#downloads a", timeout=20000)
    page.click("#downloads a >> nth=0")
    wait_for_job(page, 'SUCCESS', timeout=60000)
    assert dest.sop_uids() == {p.stem for p in files}


class SubPathProxy:
    """A reverse proxy publishing Orthanc under /pacs/courier-router/ (as nginx would)."""

    PREFIX = "/pacs/courier-router"

    def __init__(self, upstream):
        import http.server
        import threading
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                if not self.path.startswith(outer.PREFIX + "/"):
                    self.send_error(404)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(self.command, upstream + self.path[len(outer.PREFIX):], data=body,
                                          headers=headers, timeout=60, allow_redirects=False)
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)
            do_GET = do_POST = _forward

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{self.PREFIX}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_ui_works_behind_a_reverse_proxy_and_never_shows_secrets(cluster, tmp_path, browser):
    (tmp_path / "key").write_text("very-secret-key-0123456789")
    node, pacs, dest = courier(cluster, tmp_path, Pseudonymization={"p": {"SecretFile": str(tmp_path / "key")}},
                               Archives={"zip": {"Path": str(tmp_path / "a")}})
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 1, patient_id="PP"))
    proxy = SubPathProxy(node.url)
    try:
        page = page_for(browser, "alice")
        seen = []
        page.on("response", lambda response: seen.append((response.status, response.url)))
        page.goto(proxy.url + "/courier/ui/explorer")
        page.select_option("select[name=Node]", "pacs")
        page.fill("input[name=PatientID]", "PP")
        page.click("#query button[type=submit]")
        page.wait_for_function("document.getElementById('message').textContent === '1 found'", timeout=30000)
        page.check("#answers tbody input[type=checkbox]")
        page.select_option("select[name=Destination]", "zip")
        page.click("#transfer button[type=submit]")           # refused: no archive password, said on the page
        page.wait_for_function("document.getElementById('message').textContent.indexOf('ArchivePassword') >= 0",
                               timeout=10000)
        page.select_option("select[name=Destination]", "dest")
        page.click("#transfer button[type=submit]")
        page.wait_for_url("**/pacs/courier-router/courier/ui/jobs/*", timeout=30000)
        wait_for_job(page, 'SUCCESS', timeout=60000)
        for link in ("", "jobs", "nodes", "audit", "quarantine", "routes", "batch", "jobs?status=SUCCESS"):
            page.goto(proxy.url + "/courier/ui/" + link)
            assert "very-secret-key" not in page.content() and "change-me" not in page.content()
        assert page.locator("#jobs .status").all_inner_texts() == ["SUCCESS"]
        page.goto(proxy.url + "/courier/ui/jobs?status=FAILURE")
        assert page.locator("#jobs td").first.inner_text() == "no job yet"
        assert all(url.startswith(proxy.url) for _, url in seen)          # every request stayed under the sub-path
        assert not [url for status, url in seen if status == 404]
    finally:
        proxy.close()


def test_explorer_asks_several_nodes_remembers_the_query_and_makes_a_job_per_node(cluster, tmp_path, browser):
    pacs, other, dest = cluster.orthanc("pacs", start=False), cluster.orthanc("other", start=False), cluster.orthanc("dest")
    node = Orthanc(tmp_path, "router", courier={"AllowedCallers": "Any", "Users": {"alice": {"Role": "admin"}}},
                   extra={"AuthenticationEnabled": True, "RegisteredUsers": USERS,
                          "DicomModalities": {"pacs": pacs.as_modality(), "other": other.as_modality(),
                                              "dest": dest.as_modality()}})
    cluster.nodes.append(node)
    for each in (pacs, other):
        each.config["DicomModalities"] = {"router": node.as_modality()}
        each.start()
    node.start()
    first = write_instances(tmp_path / "a", 1, patient_id="PM", StudyDescription="CT CHEST")
    second = write_instances(tmp_path / "b", 2, patient_id="PM", StudyDescription="CT CHEST")
    storescu(pacs.dicom_port, first + write_instances(tmp_path / "c", 1, patient_id="PM", StudyDescription="MR HEAD"))
    storescu(other.dicom_port, second)
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/explorer")
    page.select_option("select[name=Node]", ["pacs", "other"])
    page.fill("input[name=PatientID]", "PM")
    page.fill("input[name=StudyDescription]", "*CHEST*")
    page.click("#query button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent !== 'querying...'", timeout=30000)
    assert page.locator("#message").inner_text() == "2 found"
    assert sorted(page.locator("#answers tbody tr td:nth-child(2)").all_inner_texts()) == ["other", "pacs"]
    page.reload()                                                     # the last query is remembered
    assert sorted(page.eval_on_selector("select[name=Node]", "s => Array.from(s.selectedOptions).map(o => o.value)")) == \
        ["other", "pacs"]
    assert page.input_value("input[name=StudyDescription]") == "*CHEST*" and page.input_value("input[name=PatientID]") == "PM"
    page.click("#query button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent === '2 found'", timeout=30000)
    page.check("#answers tbody tr:nth-child(1) input[type=checkbox]")
    page.check("#answers tbody tr:nth-child(2) input[type=checkbox]")
    page.click("#transfer button[type=submit]")
    page.wait_for_url("**/courier/ui/jobs", timeout=30000)
    wait_until(lambda: dest.sop_uids() == {p.stem for p in first + second}, 60, what="both studies at the destination")
    assert sorted(j["Source"] for j in node.get("/courier/jobs")["jobs"]) == ["other", "pacs"]


def test_subscriptions_page_previews_creates_edits_pauses_and_deletes(cluster, tmp_path, browser):
    import datetime
    node, pacs, dest = courier(cluster, tmp_path)
    yesterday = f"{datetime.date.today() - datetime.timedelta(days=1):%Y%m%d}"
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 2, patient_id="PS", StudyDate=yesterday))
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/subscriptions")
    assert page.locator("#subscriptions td").first.inner_text() == "no subscription yet"
    page.fill("input[name=Name]", "nightly <b>CT</b>")
    page.select_option("select[name=Source]", "pacs")
    page.select_option("select[name=Destination]", "dest")
    page.fill("input[name=From]", "-3d")
    page.fill("input[name=Every]", "1h")
    page.click("#preview")
    page.wait_for_function("document.getElementById('preview-result').textContent.indexOf('day(s)') >= 0", timeout=30000)
    assert "the past, first partition" in page.locator("#preview-result").inner_text()
    assert dest.instances() == []
    page.click("#save")
    page.wait_for_selector("#subscriptions tr[data-id]", timeout=10000)
    assert page.locator("#subscriptions tr[data-id] td").nth(1).inner_text() == "nightly <b>CT</b>"   # text, not markup
    wait_until(lambda: len(dest.instances()) == 2, 60, what="the past transferred")
    page.reload()
    assert page.locator("#subscriptions .studies").inner_text() == "1"
    page.screenshot(path=str(SHOTS / "subscriptions.png"), full_page=True)
    page.click("button[data-edit]")
    assert page.is_disabled("select[name=Source]") and page.input_value("input[name=Every]") == "1h"
    page.fill("input[name=Every]", "")
    page.fill("input[name=Schedule]", "0 3 * * *")
    page.click("#save")
    page.wait_for_function("document.querySelector('#subscriptions tr[data-id] td:nth-child(5)')?.textContent"
                           " === '0 3 * * *'", timeout=10000)
    sub_id = node.get("/courier/subscriptions")["subscriptions"][0]["Id"]
    assert node.get(f"/courier/subscriptions/{sub_id}")["Schedule"] == "0 3 * * *"
    page.click("button[data-post$='/pause']")
    page.wait_for_function("document.querySelector('#subscriptions .status')?.textContent === 'PAUSED'", timeout=10000)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button[data-delete]")
    page.wait_for_function("document.querySelector('#subscriptions td')?.textContent === 'no subscription yet'",
                           timeout=10000)
    actions = [e["action"] for e in node.get("/courier/audit")["entries"] if e["action"].startswith("subscription-")]
    assert actions[:4] == ["subscription-delete", "subscription-pause", "subscription-edited", "subscription-run"]


def test_a_job_made_to_start_by_hand_shows_ready_and_a_start_button(cluster, tmp_path, browser):
    node, pacs, dest = courier(cluster, tmp_path)
    storescu(pacs.dicom_port, write_instances(tmp_path / "s", 1, patient_id="PR"))
    job = requests.post(node.url + "/courier/jobs", auth=node.auth, timeout=30,
                        json={"Source": "pacs", "Destination": "dest", "Start": "manual", "Items": [{"PatientID": "PR"}]})
    assert job.status_code == 200, job.text
    wait_until(lambda: node.get(f"/courier/jobs/{job.json()['Id']}")["Status"] == "READY", 30, what="READY")
    page = page_for(browser, "alice")
    page.goto(node.url + f"/courier/ui/jobs/{job.json()['Id']}")
    assert page.locator("#status").inner_text() == "READY" and "1/1 resolved" in page.locator("#items").inner_text()
    page.click("button[data-action=start]")
    wait_for_job(page, "SUCCESS")
    assert len(dest.instances()) == 1


def test_upload_page_sends_files_and_a_folder_previews_them_and_sends_them_on(cluster, tmp_path, browser):
    import io
    import zipfile
    node, pacs, dest = courier(cluster, tmp_path)
    loose = write_instances(tmp_path / "loose", 2, patient_id="UP1", modality="MR", SeriesDescription="<b>T2</b>")
    folder = write_instances(tmp_path / "folder" / "series", 1, patient_id="UP2")
    packed = write_instances(tmp_path / "packed", 1, patient_id="UP3")
    import tarfile

    import py7zr
    tarred = write_instances(tmp_path / "tarred", 1, patient_id="UP4")
    sevened = write_instances(tmp_path / "sevened", 1, patient_id="UP5")
    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(packed[0], "in/" + packed[0].name)
        zipped.writestr("notes.txt", "not DICOM")
        zipped.writestr("../../escape.dcm", packed[0].read_bytes())          # refused: leaves the archive
    with tarfile.open(tmp_path / "more.tar.gz", "w:gz") as tar:
        tar.add(tarred[0], arcname="t/" + tarred[0].name)
    with py7zr.SevenZipFile(tmp_path / "more.7z", "w") as seven:
        seven.write(sevened[0], "s/" + sevened[0].name)
    assert io and node
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/upload")
    page.set_input_files("#files", [str(p) for p in loose] + [str(archive), str(tmp_path / "more.tar.gz"),
                                                              str(tmp_path / "more.7z")])
    page.wait_for_function("document.getElementById('progress-text').textContent === '5/5'", timeout=30000)
    page.wait_for_selector("#preview section.patient", timeout=10000)
    page.set_input_files("#folder", str(tmp_path / "folder"))
    page.wait_for_function("document.querySelectorAll('#preview section.patient').length === 5", timeout=30000)
    assert page.locator("#rejected tr", has_text="escape.dcm").locator("td").nth(1).inner_text() == "skipped"
    assert page.locator("#preview li.series", has_text="<b>T2</b>: 2 instance(s)").count() == 1      # text, not markup
    assert page.evaluate("document.querySelector('#preview img').naturalWidth") > 0                  # a thumbnail
    assert page.locator("#rejected td", has_text="notes.txt").count() == 1
    page.screenshot(path=str(SHOTS / "upload.png"), full_page=True)
    assert dest.instances() == []
    page.select_option("#actions select[name=Destination]", "dest")
    page.click("#actions button[data-action=send]")
    page.wait_for_function("document.getElementById('message').textContent.indexOf('sent') === 0", timeout=10000)
    wait_until(lambda: dest.sop_uids() == {p.stem for p in loose + folder + packed + tarred + sevened}, 30,
               what="the upload at dest")
    carol = page_for(browser, "carol")
    assert carol.goto(node.url + "/courier/ui/upload").status == 403                                  # viewers may not


def test_tasks_page_filters_ticks_and_acts_and_a_task_shows_its_history(cluster, tmp_path, browser):
    node, pacs, dest = courier(cluster, tmp_path, Retry={"MaxAttempts": 1},
                               Routes=[{"Name": "lost", "Destinations": ["dest"]}])
    dest.stop()                                             # nobody answers there: the tasks fail
    storescu(node.dicom_port, write_instances(tmp_path / "s", 3, patient_id="TP"))
    wait_until(lambda: node.get("/courier/tasks", state="FAILURE")["total"] == 3, 30, what="three failed tasks")
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/tasks?state=FAILURE&route=lost")
    assert page.locator("#tasks .state").all_inner_texts() == ["FAILURE"] * 3
    assert "state=FAILURE" in page.get_attribute("#csv", "href")
    page.locator("input.pick").first.check()
    # each action shows its answer, then reloads the page 300 ms later: the next step waits for that
    # reload (a goto or a click meanwhile was aborted by it: net::ERR_ABORTED)
    with page.expect_navigation(timeout=10000):
        page.click("button[data-bulk=cancel]")              # a FAILURE task cannot be cancelled: nothing changes
        page.wait_for_function("document.getElementById('message').textContent === '0 task(s) changed'",
                               timeout=10000)
    page.on("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation(timeout=10000):
        page.click("button[data-bulk=retry][data-all]")
        page.wait_for_function("document.getElementById('message').textContent === '3 task(s) changed'",
                               timeout=10000)
    wait_until(lambda: node.get("/courier/tasks", state="FAILURE")["total"] == 3, 30, what="failed again")
    task_id = node.get("/courier/tasks")["tasks"][0]["id"]
    page.goto(node.url + f"/courier/ui/tasks/{task_id}")
    history = page.locator("#history td:nth-child(2)").all_inner_texts()
    assert "task-created" in history and "task-bulk-retry" in history and "task-failed" in history
    assert page.locator("#missing li").count() == 1 and page.locator("#error").inner_text()
    page.screenshot(path=str(SHOTS / "task.png"), full_page=True)
    viewer = page_for(browser, "carol")
    viewer.goto(node.url + "/courier/ui/tasks")
    assert viewer.locator("p.bulk").count() == 0                               # only admins act


def test_the_dashboard_refreshes_itself_while_instances_flow_and_the_toggle_is_remembered(cluster, tmp_path, browser):
    node, pacs, dest = courier(cluster, tmp_path, Routes=[{"Name": "each", "Destinations": ["dest"]}])
    page = page_for(browser, "alice")
    page.goto(node.url + "/courier/ui/")
    page.wait_for_function("document.body.dataset.refreshes === '1'", timeout=10000)
    assert page.locator("#received-today").inner_text() == "0 instances"
    storescu(node.dicom_port, write_instances(tmp_path / "s", 3, patient_id="LIVE"))     # while the page is open
    page.wait_for_function("document.getElementById('received-today').textContent === '3 instances'", timeout=20000)
    page.wait_for_function("document.querySelector(\"#queue td[data-state='SUCCESS']\")?.textContent === '3'",
                           timeout=20000)
    assert page.locator("#chart-instances rect").count() > 24 and page.locator("#chart-instances text.tick").count() >= 4
    import re
    assert re.fullmatch(r"[0-9.]+ (B|KB|MB|GB|TB)", page.locator("#storage-used").inner_text())     # readable units
    assert re.fullmatch(r"[0-9.]+ (KB|MB|GB|TB)", page.locator("#storage-free").inner_text())
    assert page.locator("#topology .node[data-node='dest']").count() >= 1
    assert page.locator("#active-sending").inner_text().isdigit() and page.locator("#active-callers").inner_text() != "…"
    page.screenshot(path=str(SHOTS / "dashboard-live.png"), full_page=True)
    page.uncheck("#live")
    page.reload()
    assert not page.is_checked("#live")                               # remembered in this browser
    page.wait_for_function("document.body.dataset.refreshes === '1'", timeout=10000)
    page.wait_for_timeout(6000)
    assert page.evaluate("document.body.dataset.refreshes") == "1"    # no refresh while off


def test_every_page_passes_axe_core_without_a_serious_violation_in_each_theme(cluster, tmp_path, browser):
    from axe_playwright_python.sync_playwright import Axe
    node, pacs, dest = courier(cluster, tmp_path, Routes=[{"Name": "each", "Destinations": ["dest"]}])
    storescu(node.dicom_port, write_instances(tmp_path / "s", 2, patient_id="AX"))
    wait_until(lambda: len(dest.instances()) == 2, 30, what="something to show")
    job = requests.post(node.url + "/courier/jobs", auth=("alice", USERS["alice"]), timeout=30,
                        json={"Source": "pacs", "Destination": "dest", "Items": [{"StudyInstanceUID": "1.2.3.4"}]})
    requests.post(node.url + "/courier/subscriptions", auth=("alice", USERS["alice"]), timeout=30,
                  json={"Source": "pacs", "Destination": "dest", "Every": "1h", "Name": "ax"})
    task_id = node.get("/courier/tasks", limit=1)["tasks"][0]["id"]
    pages = ["", "explorer", "tasks", f"tasks/{task_id}", "jobs", "subscriptions", "batch", "upload", "routes", "nodes",
             "audit", "traffic", "quarantine", "config"] + ([f"jobs/{job.json()['Id']}"] if job.status_code == 200 else [])
    axe = Axe()
    page = page_for(browser, "alice")
    found = {}
    for theme in ("light", "dark", "contrast"):
        page.goto(node.url + "/courier/ui/")
        page.select_option("#theme", theme)
        for name in pages:
            page.goto(node.url + "/courier/ui/" + name)
            assert page.evaluate("document.documentElement.dataset.theme") == theme     # remembered across pages
            results = axe.run(page)
            serious = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]
                       if v["impact"] in ("serious", "critical")]
            if serious:
                found[(theme, name)] = serious
    assert not found, found


def test_configuration_page_adds_a_node_edits_a_route_tests_it_and_restores_a_version(cluster, tmp_path, browser):
    node, pacs, dest = courier(cluster, tmp_path, Routes=[{"Name": "r", "Match": {"Modality": "CT"},
                                                           "Destinations": ["dest"]}])
    other = cluster.orthanc("other")
    page = page_for(browser, "alice")
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(node.url + "/courier/ui/config")
    assert page.locator("#version").inner_text() == "1"
    # a DICOM node added in the UI is Orthanc's too, and answers an echo from the Nodes page
    page.select_option("#editor select[name=section]", "modalities")
    page.fill("#editor input[name=name]", "other")
    page.fill("#entry", json.dumps(other.as_modality()))
    page.click("#editor button[type=submit]")
    page.wait_for_selector("#section-modalities tr[data-name=other]")
    assert page.locator("#version").inner_text() == "2"
    assert "other" in node.get("/modalities")
    page.goto(node.url + "/courier/ui/nodes")
    page.click("tr[data-node=other] button")
    page.wait_for_function("document.querySelector('tr[data-node=other] .echo')?.textContent === 'ok'", timeout=20000)
    # the route edited in the UI, tested as a draft first, then saved: the next instance follows it
    page.goto(node.url + "/courier/ui/config")
    page.click("button.edit[data-section=routes][data-name=r]")
    assert json.loads(page.input_value("#entry"))["Destinations"] == ["dest"]
    page.fill("#entry", json.dumps({"Name": "r", "Match": {"Modality": "MR"}, "Destinations": ["other"]}))
    page.fill("#tester-tags", "Modality=MR")
    page.click("#test-draft")
    page.wait_for_selector("#draft-fired li")
    assert page.locator("#draft-fired li").all_inner_texts() == ["r"]
    page.fill("#editor input[name=comment]", "MR to other")
    page.click("#editor button[type=submit]")
    page.wait_for_function("document.getElementById('version')?.textContent === '3'")   # the page reloads
    mr = write_instances(tmp_path / "mr", 1, modality="MR")
    storescu(node.dicom_port, mr)
    wait_until(lambda: other.sop_uids() == {mr[0].stem}, 30, what="the MR at the node the edited route names")
    page.click("button.changes[data-version='3']")
    page.wait_for_selector("#change-list li")
    assert any("changed Courier.Routes.r.Destinations" in t for t in page.locator("#change-list li").all_inner_texts())
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "config.png"), full_page=True)
    # version 2 restored: CT goes to dest again
    page.click("button.restore[data-version='2']")
    page.wait_for_function("document.getElementById('version')?.textContent === '4'")   # the page reloads
    assert page.locator("#versions tr[data-version='4'] td").nth(4).inner_text() == "restored version 2"
    ct = write_instances(tmp_path / "ct", 1, modality="CT")
    storescu(node.dicom_port, ct)
    wait_until(lambda: ct[0].stem in dest.sop_uids(), 30, what="the CT at dest, by the restored route")
    assert other.sop_uids() == {mr[0].stem}
    # a bad edit shows the parser's message with its JSON path, and changes nothing
    page.click("button.edit[data-section=routes][data-name=r]")
    page.fill("#entry", json.dumps({"Destinations": ["nowhere"]}))
    page.click("#editor button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent.includes('Courier.Routes[0].Destinations[0]')")
    assert page.locator("#version").inner_text() == "4"
    # viewers do not see it
    assert page_for(browser, "carol").goto(node.url + "/courier/ui/config").status == 403
