"""REST handlers for routed and manual tasks: list, one task, retry, cancel, send a stored study."""
from __future__ import annotations

import re
import time
from typing import Any, Mapping, Optional

from courier.errors import ApiError
from courier.host import HttpRequest, HttpResponse
from courier.store.records import CANCELED, FAILURE, PENDING, RUNNING, STATES, WARNING, AuditEvent, NewTask
from courier.transfer import batch_files
from courier.web.guard import check_nodes
from courier.web.http import Context, actor_of, json_body, paging, present, row_id, task_json


def _unix(value: Any, name: str) -> Optional[float]:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{name} must be a Unix time, got {value!r}") from None


def _filter(values: Mapping[str, Any], where: str = "query parameter ") -> dict:
    """state, route, destination, since, until of a task filter (query parameters or a JSON Filter)."""
    state = values.get("state") or None
    if state is not None and state not in STATES:
        raise ApiError(400, f"{where}'state': unknown state {state!r}; one of {', '.join(STATES)}")
    return {"state": state, "route": values.get("route") or None, "destination": values.get("destination") or None,
            "since": _unix(values.get("since"), f"{where}'since'"), "until": _unix(values.get("until"), f"{where}'until'")}


def tasks(ctx: Context, request: HttpRequest, args: dict) -> Any:
    limit, offset = paging(request)
    total, rows = ctx.store.tasks.list(limit=limit, offset=offset, **_filter(request.query))
    return {"total": total, "limit": limit, "offset": offset, "tasks": [t.as_json() for t in rows]}


CSV_COLUMNS = ["id", "state", "route", "destination", "level", "resource_id", "priority", "attempts", "expected",
               "delivered", "bytes", "created_at", "finished_at", "last_error", "job_id"]


def tasks_csv(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """The tasks matching the filters of /courier/tasks, as CSV (no patient identifiers)."""
    _, rows = ctx.store.tasks.list(limit=100000, offset=0, **_filter(request.query))
    stamp = lambda at: time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at)) if at else ""  # noqa: E731
    out = [{**{c: getattr(t, c) for c in CSV_COLUMNS}, "created_at": stamp(t.created_at),
            "finished_at": stamp(t.finished_at), "last_error": t.last_error or ""} for t in rows]
    return HttpResponse(200, batch_files.to_csv(CSV_COLUMNS, out), "text/csv; charset=utf-8")


def bulk(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """retry, cancel or reprioritise the tasks `Ids`, or all those matching `Filter` (audited, one
    entry a task); tasks in a state the action does not apply to are left alone."""
    body = json_body(request)
    action = body.get("Action")
    if action not in ("retry", "cancel", "priority"):
        raise ApiError(400, "Action: one of retry, cancel, priority")
    ids, matching = body.get("Ids"), body.get("Filter")
    if (ids is None) == (matching is None):
        raise ApiError(400, "Ids: give Ids (a list of task ids) or Filter (state, route, destination, since, until)")
    priority = body.get("Priority")
    if action == "priority" and not isinstance(priority, int):
        raise ApiError(400, "Priority: an integer (higher first; an urgent job's tasks are 100)")
    changed = ctx.store.tasks.bulk(action, actor_of(request), ids=ids, priority=priority,
                                   **(_filter(matching, "Filter.") if matching is not None else {}))
    ctx.wake_workers()
    return changed


def task(ctx: Context, request: HttpRequest, args: dict) -> Any:
    task = ctx.store.tasks.get(row_id(args))
    if task is None:
        raise ApiError(404, f"no task {args['id']}")
    return task_json(ctx.store, task, with_missing=True)


def _transition(ctx: Context, request: HttpRequest, args: dict, allowed: tuple, state: str, action: str) -> Any:
    task_id = row_id(args)
    former = ctx.store.tasks.set_state(task_id, allowed, state, actor_of(request), action)
    if former is None:
        raise ApiError(404, f"no task {task_id}")
    if former.startswith("!"):
        raise ApiError(409, f"task {task_id} is {former[1:]}; only {', '.join(allowed)} tasks can be "
                            f"{'retried' if state == PENDING else 'cancelled'}")
    return task_json(ctx.store, ctx.store.tasks.get(task_id), with_missing=True)


def retry(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return _transition(ctx, request, args, (FAILURE, WARNING, CANCELED), PENDING, "task-retried")


def cancel(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return _transition(ctx, request, args, (PENDING, RUNNING), CANCELED, "task-cancelled")


def send(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """A study stored in Courier's Orthanc, sent (optionally pseudonymized) by a durable task."""
    body = json_body(request)
    study, destination, profile = body.get("Study"), body.get("Destination"), body.get("Pseudonymize")
    if not isinstance(study, str) or not re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}", study):
        raise ApiError(400, "Study: the Orthanc ID of a study")
    if destination not in ctx.config.destinations:
        raise ApiError(400, f"Destination: no destination named {destination!r}")
    if profile is not None and profile not in ctx.config.profiles:
        raise ApiError(400, f"Pseudonymize: no pseudonymization profile {profile!r}")
    check_nodes(ctx, request, send_to=destination)
    if not present(ctx, "studies", study):
        raise ApiError(404, f"Study: no study {study} in Courier's Orthanc")
    actor = actor_of(request)
    (task_id,) = ctx.store.tasks.enqueue([NewTask(f"manual:{actor}", destination, "Study", study, profile=profile)],
                                    [AuditEvent("manual-send", actor=actor, destination=destination, resource_id=study,
                                                detail={"pseudonymize": profile})])
    ctx.wake_workers()
    return task_json(ctx.store, ctx.store.tasks.get(task_id), with_missing=True)
