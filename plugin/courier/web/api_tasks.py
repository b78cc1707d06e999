"""REST handlers for routed and manual tasks: list, one task, retry, cancel, send a stored study."""
from __future__ import annotations

import re
from typing import Any

from courier.errors import ApiError
from courier.host import HttpRequest
from courier.store.records import CANCELED, FAILURE, PENDING, RUNNING, STATES, WARNING, AuditEvent, NewTask
from courier.web.guard import check_nodes
from courier.web.http import Context, actor_of, json_body, paging, present, row_id, task_json


def tasks(ctx: Context, request: HttpRequest, args: dict) -> Any:
    q = request.query
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise ApiError(400, f"unknown state {state!r}; one of {', '.join(STATES)}")
    limit, offset = paging(request)
    total, rows = ctx.store.tasks.list(state, q.get("route") or None, q.get("destination") or None, limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "tasks": [t.as_json() for t in rows]}


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
