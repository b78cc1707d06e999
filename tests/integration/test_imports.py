"""Imports: watched folders (the .tmp rename rule, quiet folders, nested folders, a non-DICOM file,
a truncated DICOM, a duplicate, Move / Delete / Keep, a router killed mid-import), uploads of
files and archives with a preview, and the command line."""
import io
import os
import subprocess
import sys
import tarfile
import time
import zipfile

import py7zr
import pytest
import requests

from factory import write_instances
from harness import REPO, storescu, wait_until


def router(cluster, tmp_path, imports, **courier):
    dest = cluster.orthanc("dest")
    node = cluster.orthanc("router", start=False, courier={
        "AllowedCallers": "Any", "Retry": {"MaxAttempts": 2, "InitialDelaySeconds": 0.2},
        "Routes": [{"Name": "received", "Destinations": ["other"]},
                   {"Name": "research", "Trigger": "StableStudy", "StableAfterSeconds": 1, "Destinations": ["dest"],
                    "Match": {"Modality": "NONE"}}],
        "Imports": imports, **courier},
        extra={"DicomModalities": {"dest": dest.as_modality(), "other": ["NOBODY", "127.0.0.1", 1]}})
    node.start()
    return node, dest


def files_of(root):
    return sorted(os.path.relpath(os.path.join(b, n), root) for b, _, ns in os.walk(root) for n in ns)


def test_a_folder_being_written_waits_for_its_rename_and_every_file_ends_somewhere(cluster, tmp_path):
    inbox, done = tmp_path / "inbox", tmp_path / "done"
    node, dest = router(cluster, tmp_path, {"sendit": {"Path": str(inbox), "CompleteWhen": "Renamed", "After": "Move",
                                                       "MoveTo": str(done), "Route": "research", "RescanSeconds": 1}})
    writing = inbox / "ST-000001.tmp2343"
    series = write_instances(writing, 2, patient_id="IMP1")
    nested = write_instances(writing / "sub" / "deeper", 1, patient_id="IMP1", study_uid=_study(series))
    (writing / "notes.txt").write_text("not an image")
    whole = write_instances(tmp_path / "t", 1, patient_id="IMP1", size=64)[0].read_bytes()
    (writing / "truncated.dcm").write_bytes(whole[:len(whole) - 3000])
    known = write_instances(tmp_path / "known", 1, patient_id="IMP1", study_uid=_study(series))
    storescu(node.dicom_port, known)                      # already in Orthanc: the copy is a duplicate
    (writing / "again.dcm").write_bytes(known[0].read_bytes())
    time.sleep(3)
    assert node.get("/courier/imports")["imports"][0]["Files"] == 0, node.get("/courier/imports/sendit/files")
    os.rename(writing, inbox / "ST-000001")
    expected = {p.stem for p in series + nested + known}
    wait_until(lambda: dest.sop_uids() == expected, 30, 0.3, what="the renamed folder imported and routed")
    listed = node.get("/courier/imports/sendit/files")["files"]
    outcomes = {os.path.basename(f["Path"]): (f["Outcome"], f["State"]) for f in listed}
    assert outcomes["notes.txt"] == ("not DICOM", "rejected") and outcomes["truncated.dcm"][0] == "unreadable"
    assert outcomes["again.dcm"] == ("duplicate", "done")
    assert all(state == "done" for name, (outcome, state) in outcomes.items() if outcome in ("imported", "duplicate"))
    wait_until(lambda: not (inbox / "ST-000001").exists(), 10, what="the emptied folder removed")
    moved = files_of(done)
    assert len(moved) == 4 and "ST-000001/sub/deeper/" + nested[0].name in moved      # relative paths kept
    rejected = files_of(inbox / "rejected")
    assert sorted(rejected) == ["ST-000001/notes.txt", "ST-000001/notes.txt.reason", "ST-000001/truncated.dcm",
                                "ST-000001/truncated.dcm.reason"]
    assert "not DICOM" in (inbox / "rejected" / "ST-000001" / "notes.txt.reason").read_text()
    tasks = node.get("/courier/tasks", route="research")["tasks"]
    assert len(tasks) == 1 and tasks[0]["level"] == "Study"             # one study, one task, not per instance
    # the other routes leave imports alone: the Instance route fired only for the instance received by C-STORE
    assert node.get("/courier/tasks", route="received")["total"] == 1
    entry = node.get("/courier/audit", action="import-routed")["entries"][0]
    assert entry["detail"]["files"] == {"imported": 3, "duplicate": 1} and "IMP1" not in str(entry)


def _study(files):
    import pydicom
    return pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID


def test_quiet_folders_delete_or_keep_and_a_kept_file_is_not_imported_twice(cluster, tmp_path):
    deleting, keeping = tmp_path / "delete", tmp_path / "keep"
    node, dest = router(cluster, tmp_path, {
        "gone": {"Path": str(deleting), "QuietSeconds": 1, "After": "Delete", "Destinations": ["dest"], "RescanSeconds": 1},
        "kept": {"Path": str(keeping), "QuietSeconds": 1, "After": "Keep", "Destinations": ["dest"], "RescanSeconds": 1,
                 "Recursive": False}})
    a = write_instances(deleting / "study-a", 2, patient_id="Q1")
    b = write_instances(keeping, 2, patient_id="Q2")                  # files lying in Path itself
    wait_until(lambda: dest.sop_uids() == {p.stem for p in a + b}, 30, 0.3, what="both folders imported")
    wait_until(lambda: files_of(deleting) == [], 10, what="the imported files deleted")
    assert files_of(keeping) == sorted(p.name for p in b)
    time.sleep(3)                                                      # several rescans later
    assert node.get("/courier/tasks", destination="dest")["total"] == 2     # Keep: each file once; one task a unit
    status = {i["Id"]: i for i in node.get("/courier/imports")["imports"]}
    assert status["kept"]["Outcomes"] == {"imported": 2} and status["gone"]["States"] == {"done": 2}
    jobs_page = requests.get(f"{node.url}/courier/ui/jobs", timeout=10).text      # the Jobs page lists them
    assert "<title>Jobs · Courier</title>" in jobs_page
    assert jobs_page.count('id="imports"') == 1 and "<td>2 imported</td>" in jobs_page


def test_a_router_killed_mid_import_loses_nothing_and_routes_once(cluster, tmp_path):
    inbox = tmp_path / "inbox"
    node, dest = router(cluster, tmp_path, {"bulk": {"Path": str(inbox), "QuietSeconds": 0.5, "After": "Delete",
                                                     "Destinations": ["dest"], "RescanSeconds": 1}})
    files = write_instances(tmp_path / "staging" / "big", 120, patient_id="K1", size=64)
    os.rename(tmp_path / "staging" / "big", inbox / "big")
    wait_until(lambda: node.get("/courier/imports/bulk/files")["total"] >= 10, 30, 0.05, what="the import under way")
    node.stop(kill=True)
    node.start()
    everything = {p.stem for p in files}
    wait_until(lambda: dest.sop_uids() == everything, 60, 0.5, what="every file imported after the restart")
    wait_until(lambda: files_of(inbox) == [], 20, what="every file deleted once imported")
    assert node.get("/courier/tasks", destination="dest")["total"] == 1                 # routed once
    listed = node.get("/courier/imports/bulk/files", limit=1000)["files"]
    assert len(listed) == 120 and {f["State"] for f in listed} == {"done"}


def _zip(members):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name, content in members:
            archive.writestr(name, content)
    return data.getvalue()


def test_an_upload_of_files_and_archives_previews_then_sends_or_discards(cluster, tmp_path):
    node, dest = router(cluster, tmp_path, {})
    one = write_instances(tmp_path / "a", 2, patient_id="U1", modality="MR", SeriesDescription="T1")
    two = write_instances(tmp_path / "b", 1, patient_id="U2")
    three = write_instances(tmp_path / "c", 1, patient_id="U2", study_uid=_study(two))
    upload = node.post("/courier/uploads").json()["Id"]

    def post(name, data, kind="application/octet-stream"):
        return requests.post(f"{node.url}/courier/uploads/{upload}/files", data=data, timeout=30,
                             headers={"Content-Type": kind, "X-Courier-Filename": name})
    answer = post("scans.zip", _zip([("x/" + one[0].name, one[0].read_bytes()), ("../../evil.dcm", one[1].read_bytes()),
                                     ("readme.txt", b"hello")]), "application/zip").json()
    assert answer["Archive"] == "zip"
    assert {(os.path.basename(f["File"]), f["Outcome"]) for f in answer["Files"]} == \
        {(one[0].name, "imported"), ("readme.txt", "not DICOM"), ("evil.dcm", "skipped")}
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as archive:
        archive.add(one[1], arcname="y/" + one[1].name)
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    assert {f["Outcome"] for f in post("more.tar.gz", tar.getvalue()).json()["Files"]} == {"imported", "skipped"}
    seven = io.BytesIO()
    with py7zr.SevenZipFile(seven, "w") as archive:
        archive.writestr(two[0].read_bytes(), "z/" + two[0].name)
    assert post("last.7z", seven.getvalue()).json()["Files"][0]["Outcome"] == "imported"
    from urllib.parse import quote
    named = post(quote("检查/" + three[0].name), three[0].read_bytes(), "application/dicom").json()["Files"][0]
    assert named["Outcome"] == "imported" and named["File"] == "检查/" + three[0].name     # any name, percent-encoded
    damaged = _zip([(f"f{n}", b"") for n in range(3)])
    refused = post("damaged.zip", damaged[:40])
    assert refused.status_code == 400 and "damaged.zip: cannot read the zip archive" in refused.json()["error"]
    bomb = io.BytesIO()                                                      # 1.1 GiB of zeros in 1 MB
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("zeros.dcm", "w", force_zip64=True) as member:
            for _ in range(70):
                member.write(bytes(16 << 20))
    exploded = post("bomb.zip", bomb.getvalue())
    assert exploded.status_code == 400 and "larger than 1 GiB" in exploded.json()["error"], exploded.text
    assert node.get("/system")["Version"]                                     # Orthanc unharmed
    preview = node.get(f"/courier/uploads/{upload}")
    by_patient = {p["PatientID"]: p for p in preview["Patients"]}
    assert sorted(by_patient) == ["U1", "U2"]
    mr = by_patient["U1"]["Studies"][0]
    assert mr["Instances"] == 2 and mr["Series"][0]["Modality"] == "MR" and mr["Series"][0]["SeriesDescription"] == "T1"
    thumb = requests.get(f"{node.url}/instances/{mr['Series'][0]['Thumbnail']}/preview", timeout=10)
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/png"
    assert {r["Outcome"] for r in preview["Rejected"]} == {"not DICOM", "skipped"}
    assert dest.instances() == []                                             # held until an action
    sent = node.post(f"/courier/uploads/{upload}/send", {"Destination": "dest"})
    assert sent.status_code == 200 and sent.json()["State"] == "SENT", sent.text
    wait_until(lambda: dest.sop_uids() == {p.stem for p in one + two + three}, 30, what="the upload sent")
    assert node.post(f"/courier/uploads/{upload}/discard").status_code == 409      # ended already
    other = node.post("/courier/uploads").json()["Id"]
    fresh = write_instances(tmp_path / "d", 1, patient_id="U3")
    requests.post(f"{node.url}/courier/uploads/{other}/files", data=fresh[0].read_bytes(), timeout=30,
                  headers={"Content-Type": "application/dicom", "X-Courier-Filename": "f.dcm"})
    requests.post(f"{node.url}/courier/uploads/{other}/files", data=one[0].read_bytes(), timeout=30,
                  headers={"Content-Type": "application/dicom", "X-Courier-Filename": "g.dcm"})   # a duplicate
    assert [(u["Id"], u["State"]) for u in node.get("/courier/uploads")["uploads"]] == [(other, "OPEN"), (upload, "SENT")]
    discarded = node.post(f"/courier/uploads/{other}/discard").json()
    assert discarded["Deleted"] == 1 and fresh[0].stem not in node.sop_uids() and one[0].stem in node.sop_uids()


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "courier.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "plugin"), **(env or {})})


def test_the_command_line_dry_runs_imports_deletes_and_says_what_it_rejected(cluster, tmp_path):
    node, dest = router(cluster, tmp_path, {})
    disk = tmp_path / "disk"
    files = write_instances(disk / "p1" / "s1", 2, patient_id="C1") + write_instances(disk / "p2", 1, patient_id="C2")
    (disk / "p2" / "DICOMDIR.txt").write_text("index")
    dry = cli("import", str(disk), "--recursive", "--dry-run")
    assert dry.returncode == 1, dry.stderr                      # a file would be rejected
    assert "patient C1" in dry.stdout and "2 instances" in dry.stdout and "would reject" in dry.stdout
    assert "3 DICOM file(s) in 2 study(ies) of 2 patient(s)" in dry.stdout and files_of(disk) != []
    assert dest.instances() == [] and node.instances() == []
    run = cli("import", str(disk), "--recursive", "--destination", "dest", "--delete", "--url", node.url)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "3 imported" in run.stdout and "1 not DICOM" in run.stdout and "rejected" in run.stdout
    wait_until(lambda: dest.sop_uids() == {p.stem for p in files}, 30, what="the files at the destination")
    assert files_of(disk) == ["p2/DICOMDIR.txt"]                 # imported ones deleted, the rejected one left
    bad = cli("import", str(disk), "--route", "research", "--url", "http://127.0.0.1:1")
    assert bad.returncode == 2 and "cannot reach" in bad.stderr


@pytest.mark.parametrize("target", ["make"])
def test_make_import_takes_the_folder_as_path(cluster, tmp_path, target):
    node, dest = router(cluster, tmp_path, {})
    files = write_instances(tmp_path / "usb", 1, patient_id="M1")
    run = subprocess.run(["make", "-s", "-C", str(REPO), "import", f"PATH={tmp_path / 'usb'}", "DESTINATION=dest",
                          f"URL={node.url}"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    wait_until(lambda: dest.sop_uids() == {files[0].stem}, 30, what="the file imported through make")
