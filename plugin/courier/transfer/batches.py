"""Running batch files: transfer batches become a job, query batches run their C-FINDs.

The file is validated whole (batch.py) and, for transfers, every row is checked against the
source (the study exists there, under the row's PatientID) before anything is started.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Callable

from courier.config.parse import CourierConfig
from courier.errors import ApiError, DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import JobTarget, orthanc_id
from courier.transfer import batch_files as batch
from courier.transfer.remote import find, search_of

QUERY_RESULT_COLUMNS = ["line", "ID", "Found", "PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID",
                        "StudyDate", "AccessionNumber", "ModalitiesInStudy", "StudyDescription",
                        "NumberOfStudyRelatedInstances", "Error"]
TRANSFER_RESULT_COLUMNS = ["line", "ID", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Pseudonym", "State",
                           "Delivered", "Expected", "Error"]


def check_transfer_rows(rest: OrthancRest, source: str, rows: list[dict], search: Callable) -> list[batch.Problem]:
    problems = []
    for row in rows:
        try:
            answers = search(rest, source, "STUDY", {"StudyInstanceUID": row["StudyInstanceUID"], "PatientID": ""})
        except DeliveryError as exc:
            raise ApiError(502, f"C-FIND on {source}: {exc}") from None
        found = [a for a in answers if a.get("StudyInstanceUID") == row["StudyInstanceUID"]]
        if not found:
            problems.append(batch.Problem(row["line"], "StudyInstanceUID", f"{source} holds no such study"))
        elif found[0].get("PatientID") != row["PatientID"]:
            problems.append(batch.Problem(row["line"], "PatientID", f"{source} has this study under another PatientID"))
    return problems


def run_query_rows(rest: OrthancRest, config: CourierConfig, source: str, rows: list[dict]) -> list[dict]:
    results = []
    keys = ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber", "StudyDate", "ModalitiesInStudy",
            "StudyDescription")
    for row in rows:
        filters = {k: row[k] for k in keys if row.get(k)}
        base = {"line": row["line"], "ID": row.get("ID", "")}
        try:
            answers = find(rest, source, "STUDY", filters, config.node_settings[source].max_results,
                           search=search_of(config, source))["Answers"]
        except DeliveryError as exc:
            results.append({**base, "Found": 0, "Error": str(exc)})
            continue
        if not answers:
            results.append({**base, "Found": 0, "Error": "no study found"})
        for answer in answers:
            results.append({**base, "Found": len(answers), **answer, "Error": ""})
    return results


def transfer_results(rows: list[dict], tasks_by_target: dict[tuple[str, str], dict]) -> list[dict]:
    results = []
    for row in rows:
        task = tasks_by_target.get((row["StudyInstanceUID"], row.get("SeriesInstanceUID", "")), {})
        results.append({"line": row["line"], "ID": row.get("ID", ""), "PatientID": row["PatientID"],
                        "StudyInstanceUID": row["StudyInstanceUID"], "SeriesInstanceUID": row.get("SeriesInstanceUID", ""),
                        "Pseudonym": row.get("Pseudonym", ""),
                        "State": task.get("state", ""), "Delivered": task.get("delivered", 0),
                        "Expected": task.get("expected") or "", "Error": task.get("last_error") or ""})
    return results


def failed(kind: str, results: list[dict]) -> list[dict]:
    """Rows that failed: for a transfer, those whose task ended without everything (not those still
    PENDING or RUNNING); for a query, those with an error."""
    if kind == "transfer":
        return [r for r in results if r["State"] in ("WARNING", "FAILURE", "CANCELED")]
    return [r for r in results if r.get("Error")]


def targets_of(rows: list[dict], present: Callable[[str, str], bool]) -> list[JobTarget]:
    """The job targets of a transfer batch (a study, or a series when the row names one), in file order."""
    seen: dict[tuple[str, str], JobTarget] = {}
    for row in rows:
        study_uid, series_uid = row["StudyInstanceUID"], row.get("SeriesInstanceUID") or None
        if (study_uid, series_uid or "") in seen:
            continue
        study_id = orthanc_id(row["PatientID"], study_uid)
        resource_id = orthanc_id(row["PatientID"], study_uid, series_uid) if series_uid else study_id
        seen[(study_uid, series_uid or "")] = JobTarget(study_uid, resource_id, study_id,
                                                        present("series" if series_uid else "studies", resource_id), series_uid,
                                                        row["PatientID"])
    return list(seen.values())


FIELDS = ("File", "FileName", "Kind", "Source", "Destination", "Pseudonymize", "Trial", "Urgent", "ArchivePassword",
          "DryRun")


@dataclass(frozen=True)
class BatchUpload:
    """A POST /courier/jobs/batch body, checked: the file decoded from base64, flags as booleans."""
    file: bytes = field(repr=False)
    file_name: str
    kind: str
    source: Any
    destination: Any
    pseudonymize: Any
    trial: Any
    urgent: bool
    archive_password: Any = field(repr=False)
    dry_run: bool


def fields(body: Any) -> BatchUpload:
    """The upload request, checked (the job's own fields are checked by jobs.validate)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with File (base64), FileName, Kind and Source")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise ApiError(400, f"{unknown[0]}: unknown field; use {', '.join(FIELDS)}")
    if not isinstance(body.get("File"), str) or not body["File"]:
        raise ApiError(400, "File: the CSV or XLSX file, base64-encoded, is required")
    try:
        data = base64.b64decode(body["File"], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "File: not valid base64") from None
    for flag in ("Urgent", "DryRun"):
        if not isinstance(body.get(flag, False), bool):
            raise ApiError(400, f"{flag}: expected true or false")
    kind = body.get("Kind", "transfer")
    if kind not in batch.KINDS:
        raise ApiError(400, f"Kind: one of {', '.join(batch.KINDS)}, got {kind!r}")
    return BatchUpload(data, str(body.get("FileName") or "upload.csv"), kind, body.get("Source"), body.get("Destination"),
                       body.get("Pseudonymize"), body.get("Trial"), body.get("Urgent", False), body.get("ArchivePassword"),
                       body.get("DryRun", False))


def report(parsed: batch.Parsed, extra: list[batch.Problem] = ()) -> dict[str, Any]:
    problems = sorted(list(parsed.problems) + list(extra), key=lambda p: (p.line, p.column))
    return {"Valid": not problems, "Rows": len(parsed.rows), "Problems": [p.as_dict() for p in problems]}
