"""REST handlers for the service itself: health (for load balancers and the tests) and status."""
from __future__ import annotations

from typing import Any

from courier import VERSION
from courier.errors import ApiError
from courier.host import HttpRequest
from courier.web.http import Context


def health(ctx: Context, request: HttpRequest, args: dict) -> Any:
    if not ctx.is_healthy():
        raise ApiError(503, "Courier is starting: workers are not running yet")
    return {"status": "ok"}


def status(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return {"version": VERSION, "router": ctx.config.router_name, "workers": ctx.config.workers,
            "healthy": ctx.is_healthy(), "queue": ctx.store.tasks.queue_depth(),
            "destinations": ctx.store.tasks.destination_stats(), "busy": ctx.store.tasks.busy_slots(),
            "orthanc_warnings": list(ctx.config.orthanc_warnings)}
