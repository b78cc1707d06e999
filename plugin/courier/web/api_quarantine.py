"""REST handlers for the quarantine: the list, release after review (admin), delete (admin)."""
from __future__ import annotations

import os
from typing import Any

from courier.deid.pseudonymizer import PseudonymizationError
from courier.errors import ApiError
from courier.host import HttpRequest
from courier.store.records import NewTask
from courier.web.http import Context, actor_of, paging, row_id


def quarantine(ctx: Context, request: HttpRequest, args: dict) -> Any:
    limit, offset = paging(request)
    total, rows = ctx.store.quarantine.list(limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "entries": rows}


def release_quarantined(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """An admin reviewed a quarantined instance: deliver it anyway, pseudonymized, with the
    burned-in check waived for it alone. On send: a task to the same destination. On ingest:
    the kept original, pseudonymized, is stored (and then routed as usual)."""
    entry = ctx.store.quarantine.get(row_id(args))
    if entry is None:
        raise ApiError(404, f"no quarantine entry {args['id']}")
    profile = entry["profile"]
    if profile not in ctx.pseudonymizers:
        raise ApiError(409, f"profile {profile!r} of this entry is no longer configured")
    reviewed = ctx.pseudonymizers[profile].reviewed()
    actor = actor_of(request)
    if entry.get("file"):
        try:
            with open(entry["file"], "rb") as handle:
                data, result = reviewed.pseudonymize_bytes(handle.read())
        except OSError as exc:
            raise ApiError(409, f"the kept original cannot be read: {exc.strerror}") from None
        except PseudonymizationError as exc:
            raise ApiError(409, f"still cannot be pseudonymized: {exc.reason}") from None
        ctx.rest.post_bytes("/instances", data)
        ctx.store.crosswalk.record(profile, [result.patient_id], result.uids)
        ctx.store.quarantine.release(entry["id"], actor, None)
        os.remove(entry["file"])
        return {"released": entry["id"], "stored": True}
    task = ctx.store.tasks.get(entry["task_id"]) if entry.get("task_id") else None
    if task is None or not entry.get("instance_id"):
        raise ApiError(409, "this entry names no task or instance to deliver")
    created = ctx.store.quarantine.release(entry["id"], actor, NewTask(
        f"release:{actor}", task.destination, "Instance", entry["instance_id"], profile=profile, reviewed=True))
    ctx.wake_workers()
    return {"released": entry["id"], "task": created[0]}


def delete_quarantined(ctx: Context, request: HttpRequest, args: dict) -> Any:
    entry = ctx.store.quarantine.delete(row_id(args), actor_of(request))
    if entry is None:
        raise ApiError(404, f"no quarantine entry {args['id']}")
    if entry.get("file") and os.path.isfile(entry["file"]):
        os.remove(entry["file"])
    return {"deleted": entry["id"]}
