"""REST handlers for transfer jobs: create, list, one job with its tasks, control."""
from __future__ import annotations

import time
from typing import Any

from courier.errors import ApiError
from courier.host import HttpRequest
from courier.store.records import Job
from courier.transfer import jobs
from courier.web.guard import check_nodes, check_owner
from courier.web.http import MAX_PAGE, Context, actor_of, json_body, paging, row_id

ACTIONS = ("cancel", "pause", "resume", "retry", "priority", "start")


def _job(ctx: Context, args: dict) -> Job:
    job = ctx.store.jobs.get(row_id(args))
    if job is None:
        raise ApiError(404, f"no job {args['id']}")
    return job


def create_job(ctx: Context, request: HttpRequest, args: dict) -> Any:
    wanted = jobs.validate(json_body(request), ctx.config)
    check_nodes(ctx, request, query=wanted.source, send_to=wanted.destination)
    background = wanted.in_background                 # the scheduler resolves the items: QUERYING
    studies = [] if background else jobs.resolve(ctx.rest, ctx.config, wanted.source, wanted.items)
    job_id = ctx.store.jobs.create(actor_of(request), wanted.source, wanted.destination, wanted.profile,
                                   wanted.urgent, studies, wanted.archive_password, wanted.trial,
                                   items=wanted.items if background else (), start=wanted.start == "now",
                                   modify=wanted.modify)
    ctx.wake_scheduler() if background else ctx.wake_workers()
    return jobs.summary(ctx.store.jobs.get(job_id), time.time(), ctx.config)


def list_jobs(ctx: Context, request: HttpRequest, args: dict) -> Any:
    limit, offset = paging(request)
    total, rows = ctx.store.jobs.list(limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "jobs": [jobs.summary(j, time.time(), ctx.config) for j in rows]}


def get_job(ctx: Context, request: HttpRequest, args: dict) -> Any:
    job = _job(ctx, args)
    _, rows = ctx.store.tasks.list(job_id=job.id, limit=MAX_PAGE)
    return {**jobs.summary(job, time.time(), ctx.config), "TaskList": [t.as_json() for t in rows]}


def control_job(ctx: Context, request: HttpRequest, args: dict) -> Any:
    job = _job(ctx, args)
    check_owner(ctx, request, job)
    action = args["action"]
    if action == "priority":
        urgent = json_body(request).get("Urgent")
        if not isinstance(urgent, bool):
            raise ApiError(400, 'Urgent: expected true or false, e.g. {"Urgent": true}')
        action = "urgent" if urgent else "normal"
    elif action == "start":
        refusal = ctx.store.jobs.start(job.id, actor_of(request))
        if refusal:
            raise ApiError(409, refusal)
    elif action not in ACTIONS:
        raise ApiError(404, f"no job action {action!r}; use {', '.join(ACTIONS)}")
    elif action in ("pause", "resume") and job.phase is not None:
        raise ApiError(409, f"job {job.id} is {job.phase}: it has not started; start it, or cancel it")
    if action != "start":
        ctx.store.jobs.control(job.id, action, actor_of(request))
    ctx.wake_workers()
    return jobs.summary(ctx.store.jobs.get(job.id), time.time(), ctx.config)


def add_items(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """More items for a job: resolved now, and those studies (or series) the job has not got yet
    become its tasks."""
    job = _job(ctx, args)
    check_owner(ctx, request, job)
    if job.subscription_id is not None:
        raise ApiError(409, f"job {job.id} belongs to subscription {job.subscription_id}, which chooses its studies")
    items = jobs.check_items(json_body(request).get("Items"))
    if len(items) > jobs.BACKGROUND_ITEMS:
        raise ApiError(400, f"Items: at most {jobs.BACKGROUND_ITEMS} at a time; for more, make a new job "
                            f"(resolved in the background)")
    added = ctx.store.jobs.add_targets(job.id, actor_of(request), jobs.resolve(ctx.rest, ctx.config, job.source, items))
    ctx.wake_workers()
    return {**jobs.summary(ctx.store.jobs.get(job.id), time.time(), ctx.config), "Added": added}


def delete_job(ctx: Context, request: HttpRequest, args: dict) -> Any:
    job = _job(ctx, args)
    refusal = ctx.store.jobs.delete(job.id, actor_of(request))
    if refusal:
        raise ApiError(409, refusal)
    return {"Id": job.id, "Deleted": True}
