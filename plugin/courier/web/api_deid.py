"""REST handlers for pseudonymization: try a profile on one instance, crosswalk exports, lookup uploads."""
from __future__ import annotations

import csv
import io
from typing import Any, Optional

from courier.config.profiles import parse_lookup_csv
from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer
from courier.errors import ApiError
from courier.host import HttpRequest, HttpResponse
from courier.store.records import AuditEvent
from courier.web.http import Context, actor_of


def pseudonymizer_of(ctx: Context, name: Optional[str]) -> Pseudonymizer:
    if not name:
        raise ApiError(400, "query parameter 'profile' is required")
    if name not in ctx.pseudonymizers:
        raise ApiError(404, f"no pseudonymization profile {name!r}; configured: {', '.join(ctx.pseudonymizers) or 'none'}")
    return ctx.pseudonymizers[name]


def pseudonymize(ctx: Context, request: HttpRequest, args: dict) -> Any:
    # Orthanc 1.10.1 gives plugins the query string of GET requests only: the profile is in the path.
    pseudonymizer = pseudonymizer_of(ctx, args.get("profile") or request.query.get("profile"))
    if not request.body:
        raise ApiError(400, "send one DICOM instance as the request body")
    try:
        data, result = pseudonymizer.pseudonymize_bytes(bytes(request.body))
    except PseudonymizationError as exc:
        raise ApiError(422, f"{exc.disposition}: {exc.reason}") from None
    return HttpResponse(200, data, "application/dicom",
                        {"X-Courier-Dates-Shifted": str(result.dates_shifted),
                         "X-Courier-Dates-Removed": str(result.dates_removed)})


def _crosswalk(ctx: Context, request: HttpRequest, args: dict, kind: str, header: tuple[str, str]) -> Any:
    pseudonymizer_of(ctx, args["profile"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(ctx.store.crosswalk.rows(args["profile"], kind))
    ctx.store.audit.record(AuditEvent("crosswalk-exported", actor=actor_of(request),
                                 detail={"profile": args["profile"], "kind": kind}))
    return HttpResponse(200, out.getvalue().encode(), "text/csv; charset=utf-8")


def upload_lookup(ctx: Context, request: HttpRequest, args: dict) -> Any:
    pseudonymizer_of(ctx, args["profile"])
    try:
        rows = parse_lookup_csv(bytes(request.body).decode("utf-8-sig"), "uploaded file")
    except UnicodeDecodeError:
        raise ApiError(400, "uploaded file: not UTF-8 text") from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    except csv.Error as exc:       # a field over csv.field_size_limit() (128 KiB), a NUL character
        raise ApiError(400, f"uploaded file: not a CSV table of PatientID,Pseudonym ({exc})") from None
    count = ctx.store.crosswalk.load_lookup(args["profile"], rows)
    ctx.store.audit.record(AuditEvent("lookup-uploaded", actor=actor_of(request),
                                 detail={"profile": args["profile"], "rows": count}))
    return {"profile": args["profile"], "rows": count}


def patid_mapping(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return _crosswalk(ctx, request, args, "patients", ("old_patient_id", "new_patient_id"))


def uid_mapping(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return _crosswalk(ctx, request, args, "uids", ("old_uid", "new_uid"))
