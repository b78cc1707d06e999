"""REST handlers for batch files: upload (validated whole, by line and column), one batch, exports.

The file travels base64 in JSON: Orthanc 1.10.1's HTTP server intercepts multipart/form-data."""
from __future__ import annotations

from typing import Any

from courier.errors import ApiError
from courier.host import HttpRequest, HttpResponse
from courier.store.records import AuditEvent
from courier.transfer import batch_files as batch
from courier.transfer import batches, jobs, remote
from courier.web.guard import check_nodes
from courier.web.http import Context, actor_of, json_body, json_response, present, row_id

EXPORTS = ("results.csv", "results.xlsx", "failed.csv", "failed.xlsx")


def create_batch(ctx: Context, request: HttpRequest, args: dict) -> Any:
    upload = batches.fields(json_body(request))
    file_name, data = upload.file_name, upload.file
    kind, source, dry_run = upload.kind, upload.source, upload.dry_run
    check_nodes(ctx, request, query=source, send_to=upload.destination if kind == "transfer" else None)
    try:
        parsed = batch.validate(batch.read_table(data, file_name or "upload"), kind)
    except ValueError as exc:
        return json_response(400, {"Valid": False, "Rows": 0, "Problems": [{"line": 0, "column": "", "message": str(exc)}]})
    extra: list = []
    if kind == "transfer" and any(row.get("Pseudonym") for row in parsed.rows) and not upload.pseudonymize:
        extra.append(batch.Problem(1, "Pseudonym", "a Pseudonym column needs a Pseudonymize profile"))
    if source not in ctx.config.nodes or ctx.config.nodes[source].kind not in ("dicom", "dicomweb"):
        raise ApiError(400, f"Source: {source!r} is neither a DICOM modality nor a DICOMweb server")
    if parsed.ok and not extra and kind == "transfer":
        extra += batches.check_transfer_rows(ctx.rest, source, parsed.rows, remote.search_of(ctx.config, source))
    verdict = batches.report(parsed, extra)
    if not verdict["Valid"] or dry_run:
        return json_response(200 if dry_run else 400, {**verdict, "DryRun": dry_run})
    actor = actor_of(request)
    if kind == "query":
        results = batches.run_query_rows(ctx.rest, ctx.config, source, parsed.rows)
        batch_id = ctx.store.jobs.create_batch(actor, kind, source, file_name, parsed.rows, results=results)
        return {**verdict, "DryRun": False, "Batch": batch_id, "Results": len(results)}
    wanted = jobs.validate({"Source": source, "Destination": upload.destination,
                            "Pseudonymize": upload.pseudonymize, "Trial": upload.trial, "Urgent": upload.urgent,
                            "ArchivePassword": upload.archive_password,
                            "Items": [{"StudyInstanceUID": r["StudyInstanceUID"]} for r in parsed.rows]}, ctx.config)
    targets = batches.targets_of(parsed.rows, lambda path, rid: present(ctx, path, rid))
    job_id = ctx.store.jobs.create(actor, source, wanted.destination, wanted.profile, wanted.urgent,
                                   targets, wanted.archive_password, wanted.trial)
    pseudonyms = {r["PatientID"]: r["Pseudonym"] for r in parsed.rows if r.get("Pseudonym")}
    batch_id = ctx.store.jobs.create_batch(actor, kind, source, file_name, parsed.rows, job_id=job_id, pseudonyms=pseudonyms)
    ctx.wake_workers()
    return {**verdict, "DryRun": False, "Batch": batch_id, "Job": job_id}


def _batch_results(ctx: Context, args: dict) -> tuple[dict, list[dict], list[str]]:
    found = ctx.store.jobs.batch(row_id(args))
    if found is None:
        raise ApiError(404, f"no batch {args['id']}")
    if found["kind"] == "query":
        return found, found["results"] or [], batches.QUERY_RESULT_COLUMNS
    rows = batches.transfer_results(found["rows"], ctx.store.jobs.tasks_by_target(found["job_id"]))
    return found, rows, batches.TRANSFER_RESULT_COLUMNS


def get_batch(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """Counts, and the lists themselves (the rows as uploaded, the results so far, the failed rows):
    what results.csv and failed.csv hold, as JSON."""
    found, rows, columns = _batch_results(ctx, args)
    failed = batches.failed(found["kind"], rows)
    return {"Id": found["id"], "Kind": found["kind"], "Source": found["source"], "File": found["file_name"],
            "Job": found["job_id"], "Rows": len(found["rows"]), "Results": len(rows),
            "Failed": len(failed), "CreatedBy": found["created_by"],
            "Lists": {"Columns": columns, "Rows": found["rows"], "Results": rows, "Failed": failed}}


def batch_export(ctx: Context, request: HttpRequest, args: dict) -> Any:
    name = args["name"]
    if name not in EXPORTS:
        raise ApiError(404, f"no export {name!r}; results.csv, results.xlsx, failed.csv or failed.xlsx")
    found, rows, columns = _batch_results(ctx, args)
    if name.startswith("failed"):
        rows = batches.failed(found["kind"], rows)
    ctx.store.audit.record(AuditEvent("batch-exported", actor=actor_of(request), detail={"batch": found["id"], "file": name}))
    if name.endswith(".csv"):
        return HttpResponse(200, batch.to_csv(columns, rows), "text/csv; charset=utf-8")
    return HttpResponse(200, batch.to_xlsx(columns, rows),
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def delete_batch(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """Forget a batch (and the job it made, once that job is finished); the audit entries stay."""
    found = ctx.store.jobs.batch(row_id(args))
    if found is None:
        raise ApiError(404, f"no batch {args['id']}")
    refusal = ctx.store.jobs.delete_batch(found["id"], actor_of(request))
    if refusal:
        raise ApiError(409, refusal)
    return {"Id": found["id"], "Deleted": True, "Job": found["job_id"]}
