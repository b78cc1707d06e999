"""REST handlers for completion: the series and studies StableSeries/StableStudy routes are still
waiting for, with when each route will complete them, and forcing one to complete now."""
from __future__ import annotations

from typing import Any

from courier.errors import ApiError
from courier.host import HttpRequest
from courier.routing.stability import due_at, why_complete
from courier.web.http import Context, actor_of


def pending(ctx: Context, request: HttpRequest, args: dict) -> Any:
    now = ctx.store.clock()
    waiting: dict[str, dict] = {}
    for route in ctx.config.routes:
        if route.trigger == "Instance":
            continue
        for p in ctx.store.completions.pending(route.name, route.level):
            entry = waiting.setdefault(p.resource_id, {
                "Level": p.level, "Id": p.resource_id, "Study": p.study_id, "Instances": p.instances,
                "NotYetRouted": p.new_instances, "FirstArrival": p.first_at, "LastArrival": p.last_at,
                "Forced": p.forced_at is not None, "Routes": []})
            due = due_at(route, p)
            entry["Routes"].append({"Route": route.name, "DueAt": due, "DueInSeconds": round(max(0.0, due - now), 1),
                                    "CompleteNow": why_complete(route, p, now)})
    return {"Pending": sorted(waiting.values(), key=lambda e: -e["LastArrival"])}


def force(ctx: Context, request: HttpRequest, args: dict) -> Any:
    level = ctx.store.completions.force(args["id"], actor_of(request))
    if level is None:
        raise ApiError(404, f"no series or study {args['id']} has arrived (see GET /courier/completion)")
    ctx.wake_follower()
    return {"Id": args["id"], "Level": level, "Forced": True}
