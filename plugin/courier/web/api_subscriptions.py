"""REST handlers for subscriptions: create, list, one with its studies, pause / resume, delete,
and a preview of what the next run would fetch."""
from __future__ import annotations

import datetime
import time
from typing import Any

from courier.errors import ApiError, DeliveryError
from courier.host import HttpRequest
from courier.store.records import Subscription
from courier.transfer import jobs, schedule, subscriptions
from courier.web.guard import check_nodes, check_owner
from courier.web.http import Context, actor_of, json_body, paging, row_id

ACTIONS = ("pause", "resume")


def _iso(epoch: Any) -> Any:
    return datetime.datetime.fromtimestamp(epoch).isoformat(timespec="seconds") if epoch else None


def summary(ctx: Context, sub: Subscription) -> dict:
    spec = sub.spec
    job = ctx.store.jobs.get(sub.job_id)
    tasks = jobs.summary(job, time.time(), ctx.config)["Tasks"] if job else None
    finished = sub.next_run_at is None and sub.backfill_next is None and not (tasks and (tasks["PENDING"] + tasks["RUNNING"]))
    status = "PAUSED" if sub.paused else "FINISHED" if finished else "ERROR" if sub.last_error else "ACTIVE"
    return {"Id": sub.id, "Name": sub.name, "Status": status, "CreatedBy": sub.created_by, "CreatedAt": sub.created_at,
            **{key: spec.get(key) for key in ("Source", "Destination", "Pseudonymize", "Trial", "Urgent", "Query", "Match",
                                              "From", "Till", "Partition", "Schedule", "Every", "MaxStudiesPerRun",
                                              "PauseBetweenStudiesSeconds", "OverlapDays")},
            "Job": sub.job_id, "NextRun": _iso(sub.next_run_at), "NextRunAt": sub.next_run_at,
            "LastRun": _iso(sub.last_run_at), "LastRunSummary": sub.last_run, "LastError": sub.last_error, "Runs": sub.runs,
            "Past": {"From": spec.get("From"), "End": sub.past_end, "NextDay": sub.backfill_next,
                     "Done": sub.backfill_next is None},
            "Transferred": ctx.store.subscriptions.counts(sub.id),
            "Tasks": tasks}


def _subscription(ctx: Context, args: dict) -> Subscription:
    sub = ctx.store.subscriptions.get(row_id(args))
    if sub is None:
        raise ApiError(404, f"no subscription {args['id']}")
    return sub


def create(ctx: Context, request: HttpRequest, args: dict) -> Any:
    today = datetime.date.today()
    spec = subscriptions.validate(json_body(request), ctx.config, today)
    check_nodes(ctx, request, query=spec["Source"], send_to=spec["Destination"])
    start_day, past_end, backfill_next = subscriptions.parts(spec, today)
    sub_id = ctx.store.subscriptions.create(actor_of(request), spec["Name"], spec, start_day, past_end, backfill_next)
    ctx.wake_scheduler()
    return summary(ctx, ctx.store.subscriptions.get(sub_id))


def edit(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """The same body as create (what it leaves out of Source ... Partition stays): its schedule,
    limits, Query, Match and Name may change."""
    sub = _subscription(ctx, args)
    check_owner(ctx, request, sub, "subscription")
    kept = {k: sub.spec[k] for k in subscriptions.FIXED if sub.spec.get(k) not in (None, "", {})}
    spec = subscriptions.validate({**kept, **json_body(request)}, ctx.config, datetime.date.today())
    check_nodes(ctx, request, query=spec["Source"], send_to=spec["Destination"])
    changed = subscriptions.edited(dict(sub.spec), spec)
    ctx.store.subscriptions.update(sub.id, spec, actor_of(request), changed)
    ctx.wake_scheduler()
    return summary(ctx, ctx.store.subscriptions.get(sub.id))


def preview(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """What a new subscription with this body would fetch at its first run (nothing is stored)."""
    today = datetime.date.today()
    spec = subscriptions.validate(json_body(request), ctx.config, today)
    check_nodes(ctx, request, query=spec["Source"], send_to=spec["Destination"])
    start_day, past_end, backfill_next = subscriptions.parts(spec, today)
    windows = [schedule.present_window(today, today, spec["OverlapDays"], schedule.day(spec["Till"]),
                                       schedule.day(spec["From"]) or today),
               schedule.past_window(schedule.day(backfill_next), schedule.day(past_end), spec["Partition"])]
    runner = subscriptions.Runner(ctx.config, ctx.store, ctx.rest)
    answer = []
    try:
        for window in filter(None, windows):
            found = runner.found(spec, window)
            answer.append({"Part": window.part, "StudyDate": window.study_date, "Studies": len(found),
                           "FirstRunTakes": min(len(found), spec["MaxStudiesPerRun"]),
                           "Instances": sum(f.instances for f in found),
                           "Sample": [{"StudyDate": f.study_date, "Instances": f.instances} for f in found[:20]]})
    except DeliveryError as exc:
        raise ApiError(502, f"query on {spec['Source']}: {exc}") from None
    upcoming = subscriptions.timing(spec).next_after(datetime.datetime.now())
    return {"Windows": answer, "PastDays": (schedule.day(past_end) - schedule.day(backfill_next)).days + 1
            if backfill_next else 0, "ThenEvery": spec["Every"] or spec["Schedule"],
            "SecondRun": upcoming.isoformat(timespec="seconds") if upcoming else None}


def list_all(ctx: Context, request: HttpRequest, args: dict) -> Any:
    rows = ctx.store.subscriptions.list()
    return {"total": len(rows), "subscriptions": [summary(ctx, s) for s in rows]}


def get_one(ctx: Context, request: HttpRequest, args: dict) -> Any:
    sub = _subscription(ctx, args)
    limit, offset = paging(request)
    total, studies = ctx.store.subscriptions.studies(sub.id, limit, offset)
    return {**summary(ctx, sub), "Studies": {"total": total, "limit": limit, "offset": offset, "rows": studies}}


def control(ctx: Context, request: HttpRequest, args: dict) -> Any:
    sub = _subscription(ctx, args)
    check_owner(ctx, request, sub, "subscription")
    if args["action"] not in ACTIONS:
        raise ApiError(404, f"no subscription action {args['action']!r}; use pause or resume")
    ctx.store.subscriptions.control(sub.id, args["action"], actor_of(request))
    ctx.wake_scheduler()
    return summary(ctx, ctx.store.subscriptions.get(sub.id))


def delete(ctx: Context, request: HttpRequest, args: dict) -> Any:
    sub = _subscription(ctx, args)
    check_owner(ctx, request, sub, "subscription")
    ctx.store.subscriptions.control(sub.id, "delete", actor_of(request))
    return {"Id": sub.id, "Deleted": True, "Job": sub.job_id}
