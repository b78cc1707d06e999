"""Batch files (CSV, XLSX) through a real Courier against a real PACS."""
import csv
import io

import pydicom
import requests
from openpyxl import Workbook, load_workbook
from test_jobs import job_done, setup

from factory import write_instances
from harness import storescu


def upload(node, content, name="batch.csv", **fields):
    import base64
    raw = content.encode("utf-8") if isinstance(content, str) else content
    return requests.post(node.url + "/courier/jobs/batch", timeout=60,
                         json={"File": base64.b64encode(raw).decode(), "FileName": name, **fields})


def pacs_with_two_patients(pacs, tmp_path):
    a = write_instances(tmp_path / "a", 2, patient_id="P1", patient_name="Doe^Jane", PatientBirthDate="19700101")
    b = write_instances(tmp_path / "b", 1, patient_id="P2", patient_name="Roe^Rick", PatientBirthDate="19800202")
    storescu(pacs.dicom_port, a + b)
    return pydicom.dcmread(a[0]).StudyInstanceUID, pydicom.dcmread(b[0]).StudyInstanceUID, a + b


def test_an_invalid_file_starts_nothing_and_names_lines_and_columns(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path)
    s1, s2, _ = pacs_with_two_patients(pacs, tmp_path)
    bad = upload(node, f"PatientID,StudyInstanceUID\nP1,{s1}\nP2,not-a-uid\n", Source="pacs", Destination="dest")
    assert bad.status_code == 400
    assert bad.json()["Problems"] == [
        {"line": 3, "column": "StudyInstanceUID", "message": "not a UID (digits and dots, at most 64)"}]
    unknown = upload(node, f"PatientID,StudyInstanceUID\nP1,{s1}\nP1,1.2.3.4\nP9,{s2}\n", Source="pacs", Destination="dest")
    assert unknown.status_code == 400 and [(p["line"], p["column"]) for p in unknown.json()["Problems"]] == [
        (3, "StudyInstanceUID"), (4, "PatientID")]
    dry = upload(node, f"PatientID,StudyInstanceUID\nP1,{s1}\n", Source="pacs", Destination="dest", DryRun=True)
    assert dry.status_code == 200 and dry.json() == {"Valid": True, "Rows": 1, "Problems": [], "DryRun": True}
    assert node.get("/courier/jobs")["total"] == 0 and dest.instances() == []


def test_a_transfer_batch_with_pseudonyms_runs_and_exports_results(cluster, tmp_path):
    (tmp_path / "key").write_text("batch-secret-0123456789")
    node, dest, pacs = setup(cluster, tmp_path, Pseudonymization={"trial": {"SecretFile": str(tmp_path / "key")}})
    s1, s2, files = pacs_with_two_patients(pacs, tmp_path)
    content = f"ID;PatientID;StudyInstanceUID;Pseudonym\nrow-1;P1;{s1};SUBJ-001\nrow-2;P2;{s2};SUBJ-002\n".encode("utf-8-sig")
    started = upload(node, content, Source="pacs", Destination="dest", Pseudonymize="trial")
    assert started.status_code == 200, started.text
    job = job_done(node, started.json()["Job"])
    assert job["Status"] == "SUCCESS" and job["Instances"]["Delivered"] == 3
    assert {dest.get(f"/instances/{i}/simplified-tags")["PatientID"] for i in dest.instances()} == {"SUBJ-001", "SUBJ-002"}
    batch_id = started.json()["Batch"]
    results = list(csv.DictReader(io.StringIO(requests.get(f"{node.url}/courier/batches/{batch_id}/results.csv",
                                                           timeout=10).text)))
    assert [(r["line"], r["ID"], r["State"], r["Delivered"]) for r in results] == [
        ("2", "row-1", "SUCCESS", "2"), ("3", "row-2", "SUCCESS", "1")]
    failed = requests.get(f"{node.url}/courier/batches/{batch_id}/failed.csv", timeout=10).text.splitlines()
    assert len(failed) == 1                       # the header only
    shown = node.get(f"/courier/batches/{batch_id}")
    assert (shown["Rows"], shown["Results"], shown["Failed"]) == (2, 2, 0)
    assert [(r["ID"], r["State"], r["Delivered"]) for r in shown["Lists"]["Results"]] == [
        ("row-1", "SUCCESS", 2), ("row-2", "SUCCESS", 1)]
    assert [r["PatientID"] for r in shown["Lists"]["Rows"]] == ["P1", "P2"] and shown["Lists"]["Failed"] == []


def test_a_query_batch_finds_patient_ids_from_name_and_birth_date(cluster, tmp_path):
    node, _, pacs = setup(cluster, tmp_path)
    s1, s2, _ = pacs_with_two_patients(pacs, tmp_path)
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["ID", "PatientName", "PatientBirthDate"])
    sheet.append(["q1", "doe^jane", "19700101"])
    sheet.append(["q2", "Nobody^Here", "19990101"])
    out = io.BytesIO()
    workbook.save(out)
    answer = upload(node, out.getvalue(), name="people.xlsx", Kind="query", Source="pacs")
    assert answer.status_code == 200, answer.text
    batch_id = answer.json()["Batch"]
    rows = list(load_workbook(io.BytesIO(requests.get(f"{node.url}/courier/batches/{batch_id}/results.xlsx",
                                                       timeout=10).content)).active.values)
    header = rows[0]
    found = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    assert [(r["ID"], r["PatientID"], r["StudyInstanceUID"]) for r in found if r["Found"]] == [("q1", "P1", s1)]
    failed = list(load_workbook(io.BytesIO(requests.get(f"{node.url}/courier/batches/{batch_id}/failed.xlsx",
                                                         timeout=10).content)).active.values)
    assert [r[header.index("ID")] for r in failed[1:]] == ["q2"]
    assert [r["ID"] for r in node.get(f"/courier/batches/{batch_id}")["Lists"]["Failed"]] == ["q2"]
    assert node.get("/courier/audit", action="batch-exported")["total"] == 2


def test_a_batch_row_can_name_one_series(cluster, tmp_path):
    node, dest, pacs = setup(cluster, tmp_path)
    study = pydicom.uid.generate_uid()
    keep = write_instances(tmp_path / "keep", 2, patient_id="PB", study_uid=study)
    skip = write_instances(tmp_path / "skip", 2, patient_id="PB", study_uid=study)
    storescu(pacs.dicom_port, keep + skip)
    series = pydicom.dcmread(keep[0]).SeriesInstanceUID
    started = upload(node, f"PatientID,StudyInstanceUID,SeriesInstanceUID\nPB,{study},{series}\n",
                     Source="pacs", Destination="dest")
    assert started.status_code == 200, started.text
    assert job_done(node, started.json()["Job"])["Status"] == "SUCCESS"
    assert dest.sop_uids() == {p.stem for p in keep}
    results = list(csv.DictReader(io.StringIO(requests.get(
        f"{node.url}/courier/batches/{started.json()['Batch']}/results.csv", timeout=10).text)))
    assert [(r["SeriesInstanceUID"], r["State"], r["Delivered"]) for r in results] == [(series, "SUCCESS", "2")]
