"""REST handlers for the audit trail: filtered pages and the CSV export."""
from __future__ import annotations

import json
import time
from typing import Any

from courier.errors import ApiError
from courier.host import HttpRequest, HttpResponse
from courier.transfer import batch_files
from courier.web.http import Context, int_param, paging


def _audit_query(ctx: Context, request: HttpRequest, limit: int, offset: int) -> tuple[int, list[dict]]:
    q = request.query
    times = {}
    for name in ("since", "until"):
        if q.get(name):
            try:
                times[name] = float(q[name])
            except ValueError:
                raise ApiError(400, f"query parameter '{name}' must be a Unix time, got {q[name]!r}") from None
    return ctx.store.audit.entries(q.get("action") or None, q.get("actor") or None, q.get("route") or None,
                                int_param(q.get("task"), "task", 0) or None, times.get("since"), limit, offset,
                                node=q.get("node") or None, until=times.get("until"))


def audit(ctx: Context, request: HttpRequest, args: dict) -> Any:
    limit, offset = paging(request)
    total, rows = _audit_query(ctx, request, limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "entries": rows}


def audit_csv(ctx: Context, request: HttpRequest, args: dict) -> Any:
    _, rows = _audit_query(ctx, request, 100000, 0)
    columns = ["id", "at", "actor", "action", "route", "destination", "resource_id", "task_id", "detail"]
    for row in rows:
        row["at"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(row["at"]))
        row["detail"] = json.dumps(row["detail"]) if row["detail"] else ""
    return HttpResponse(200, batch_files.to_csv(columns, rows), "text/csv; charset=utf-8")
