"""The live dashboard's numbers, as JSON (the page refreshes itself from it): uptime, queue and
queue wait, associations active (sends in progress, callers sending now), instances received
today, Orthanc's storage used and the disk's free space, each
node's state from its last echo, the routes between sources and destinations, and the hourly
(24 h) and daily (30 days) series of received, delivered, failed, bytes and latency."""
from __future__ import annotations

import datetime
import shutil
import time
from typing import Any

from courier import VERSION
from courier.host import HttpRequest
from courier.web.http import Context


def node_state(status: Any, failing: bool, interval: float, now: float) -> str:
    """green: its last echo answered; red: it did not; amber: not asked lately, or tasks to it failed
    in the last hour although it answers."""
    if status is None:
        return "amber"
    if not status["Ok"]:
        return "red"
    stale = interval > 0 and now - status["At"] > 3 * interval
    return "amber" if stale or failing else "green"


def dashboard(ctx: Context, request: HttpRequest, args: dict) -> Any:
    store, config, now = ctx.store, ctx.config, time.time()
    store.stats.rollup(hours=1)                 # this hour, as of now (the metrics thread rolls up the rest)
    hours = store.stats.hourly(24)
    midnight = datetime.datetime.combine(datetime.date.today(), datetime.time()).timestamp()
    try:
        statistics = ctx.rest.get_json("/statistics") if ctx.rest else {}
    except Exception:  # noqa: BLE001 - Orthanc busy: the rest of the dashboard still answers
        statistics = {}
    try:
        free = shutil.disk_usage(config.storage_directory).free
    except OSError:
        free = None
    failing = store.tasks.failing_destinations(now - 3600)
    statuses = store.nodes.statuses()
    nodes = [{"Id": node.id, "Kind": node.kind, "Aet": node.aet or None,
              "State": node_state(statuses.get(node.id), node.id in failing, config.echo_interval, now),
              "LastEcho": statuses.get(node.id)} for node in config.nodes.values()]
    return {"Version": VERSION, "Router": config.router_name, "Healthy": ctx.is_healthy(),
            "UptimeSeconds": round(now - ctx.started_at), "Queue": store.tasks.queue_depth(),
            "QueueWaitSeconds": round(store.tasks.queue_wait(), 1),
            # associations now: Courier's own sends (a worker slot each), and callers whose traffic
            # grew in the last seconds (the traffic log; Orthanc 1.10.1 shows no association itself)
            "Active": {"Sending": sum(store.tasks.busy_slots().values()), "Callers": store.traffic.active(now)},
            "ReceivedToday": int(sum(h["received"] for h in hours if h["Hour"] + 3600 > midnight)),
            "Storage": {"UsedBytes": int(statistics.get("TotalDiskSize") or 0) or None, "FreeBytes": free,
                        "Instances": statistics.get("CountInstances")},
            "Nodes": nodes,
            "Routes": [{"Name": r.name, "Trigger": r.trigger, "Destinations": list(r.destinations),
                        "Callers": list(r.allowed_calling_aets or [])} for r in config.routes],
            "Hours": hours, "Days": store.stats.daily(30), "EchoIntervalSeconds": config.echo_interval}
