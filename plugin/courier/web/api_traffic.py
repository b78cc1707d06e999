"""REST handlers for the DICOM traffic log: filtered pages, the CSV export, and the route Courier's
Lua script posts each C-FIND Orthanc serves to (plugin/courier_traffic.lua; Orthanc 1.10.1 tells a
plugin nothing about a C-FIND it serves). That route is refused to every HTTP client by Orthanc's
incoming-HTTP filter (courier.web.guard.internal_only), which never sees Orthanc's internal calls."""
from __future__ import annotations

import time
from typing import Any, Optional

from courier.errors import ApiError
from courier.host import HttpRequest, HttpResponse
from courier.orthanc_rest import OrthancHttpError
from courier.store.records import TRAFFIC_SERVICES, TRAFFIC_STATUSES, TrafficEvent
from courier.store.traffic import COLUMNS
from courier.transfer import batch_files
from courier.web.http import Context, json_body, paging

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE", "WORKLIST")
CSV_COLUMNS = list(COLUMNS)           # the store's, in its order


def _time(value: Optional[str], name: str) -> Optional[float]:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ApiError(400, f"query parameter '{name}' must be a Unix time, got {value!r}") from None


def _day(value: Optional[str], name: str) -> Optional[float]:
    """"2024-01-31" -> that day's local midnight as Unix time."""
    if not value:
        return None
    try:
        return time.mktime(time.strptime(value, "%Y-%m-%d"))
    except ValueError:
        raise ApiError(400, f"query parameter '{name}' must be a day (YYYY-MM-DD), got {value!r}") from None


def filters(query: dict) -> dict:
    """service, calling AE (`caller`), status, and since/until (Unix times) or from/to (days, `to`
    included) of /courier/traffic."""
    service, status = query.get("service") or None, query.get("status") or None
    if service is not None and service not in TRAFFIC_SERVICES:
        raise ApiError(400, f"query parameter 'service': one of {', '.join(TRAFFIC_SERVICES)}, got {service!r}")
    if status is not None and status not in TRAFFIC_STATUSES:
        raise ApiError(400, f"query parameter 'status': one of {', '.join(TRAFFIC_STATUSES)}, got {status!r}")
    since = _time(query.get("since"), "since")
    until = _time(query.get("until"), "until")
    day_from, day_to = _day(query.get("from"), "from"), _day(query.get("to"), "to")
    if day_from is not None:
        since = day_from if since is None else max(since, day_from)
    if day_to is not None:
        until = day_to + 86400 if until is None else min(until, day_to + 86400)
    return {"service": service, "calling_aet": query.get("caller") or None, "status": status, "since": since,
            "until": until}


def row_json(row: dict) -> dict:
    return {"Id": row["id"], "FirstAt": row["first_at"], "LastAt": row["last_at"], "Service": row["service"],
            "CallingAet": row["calling_aet"], "CalledAet": row["called_aet"], "RemoteIp": row["remote_ip"],
            "Status": row["status"], "Operations": row["operations"], "Instances": row["instances"],
            "Bytes": row["bytes"], "Detail": row["detail"]}


def traffic(ctx: Context, request: HttpRequest, args: dict) -> Any:
    limit, offset = paging(request)
    total, rows = ctx.store.traffic.entries(**filters(request.query), limit=limit, offset=offset)
    return {"total": total, "limit": limit, "offset": offset, "entries": [row_json(r) for r in rows]}


def traffic_csv(ctx: Context, request: HttpRequest, args: dict) -> Any:
    _, rows = ctx.store.traffic.entries(**filters(request.query), limit=100000, offset=0)
    for row in rows:
        for name in ("first_at", "last_at"):
            row[name] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(row[name]))
    return HttpResponse(200, batch_files.to_csv(CSV_COLUMNS, rows), "text/csv; charset=utf-8")


def _text(event: dict, name: str) -> str:
    return str(event.get(name) or "").strip()


def _move_served(ctx: Context, job_id: str) -> Any:
    """A C-MOVE Orthanc served, from its job (SynchronousCMove false): who asked, to where, how
    many instances went and how many failed."""
    if ctx.rest is None or not job_id:
        raise ApiError(400, "Job: the id of the C-MOVE's job")
    try:
        job = ctx.rest.get_json(f"/jobs/{job_id}")
    except OrthancHttpError as exc:
        raise ApiError(404 if exc.status == 404 else 502, f"Job: {exc}") from None
    content = job.get("Content") or {}
    if job.get("Type") != "DicomModalityStore" or content.get("Description") != "C-MOVE":
        raise ApiError(400, "Job: not a C-MOVE Orthanc served")
    count, failed = int(content.get("InstancesCount") or 0), int(content.get("FailedInstancesCount") or 0)
    detail = f"to {content.get('RemoteAet') or '?'}" + (f", {failed} failed" if failed or job.get("State") == "Failure"
                                                       else "")
    ctx.store.traffic.record([TrafficEvent("C-MOVE", str(content.get("MoveOriginatorAET") or "?"), "accepted",
                                           ctx.store.clock(), called_aet=str(content.get("LocalAet") or ""),
                                           instances=max(0, count - failed), detail=detail)])
    return {"Recorded": True}


def record_event(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """{"Service": "C-FIND", "CallingAet", "CalledAet", "RemoteIp", "Level"} from Courier's Lua script:
    one C-FIND served (only these fields are read: a query's keys, names and IDs, never reach the
    log), or {"Service": "C-MOVE", "Job"}: a C-MOVE served, read from its job."""
    event = json_body(request)          # checked against bodies.TRAFFIC_EVENT (4 KiB, strings of 64)
    service = _text(event, "Service")
    if service == "C-MOVE":
        return _move_served(ctx, _text(event, "Job"))
    if service != "C-FIND":
        raise ApiError(400, "Service: only C-FIND and C-MOVE are posted (C-STOREs come from the change log)")
    level = _text(event, "Level").upper()
    ctx.store.traffic.record([TrafficEvent(service, _text(event, "CallingAet") or "?", "accepted", ctx.store.clock(),
                                           called_aet=_text(event, "CalledAet"), remote_ip=_text(event, "RemoteIp"),
                                           detail=level if level in LEVELS else "")])
    return {"Recorded": True}
