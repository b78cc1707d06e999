"""REST handlers for imports: the watched folders with their counts and files, and uploads (files
or archives posted one by one, a preview grouped by patient / study / series, then route, send
or discard). The command line (courier.cli) and the upload page use the same routes."""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import unquote

from courier.errors import ApiError
from courier.host import HttpRequest
from courier.imports import archives
from courier.imports.importer import Target
from courier.routing.rules import evaluate
from courier.store.records import AuditEvent
from courier.web.guard import check_nodes, rights_of
from courier.web.http import Context, actor_of, json_body, paging, row_id

ACTIONS = ("route", "send", "discard")
TRIGGERS = ("Instance", "StableSeries", "StableStudy")


def imports(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return {"imports": ctx.watcher.status() if ctx.watcher else []}


def import_files(ctx: Context, request: HttpRequest, args: dict) -> Any:
    if args["id"] not in ctx.config.imports:
        raise ApiError(404, f"no watched folder {args['id']!r} (Courier.Imports)")
    limit, offset = paging(request)
    total, rows = ctx.store.imports.files(args["id"], limit, offset)
    return {"total": total, "limit": limit, "offset": offset, "files": rows}


def _upload(ctx: Context, args: dict, open_only: bool = False, request: Optional[HttpRequest] = None) -> dict:
    """The upload; with `request`, only for the user who began it, or an admin."""
    found = ctx.store.imports.upload(row_id(args))
    if found is None:
        raise ApiError(404, f"no upload {args['id']}")
    if request is not None and rights_of(ctx, request).role != "admin" and found["created_by"] != actor_of(request):
        raise ApiError(403, f"upload {found['id']} belongs to {found['created_by']}; only its owner or an admin may "
                            f"add to it or end it")
    if open_only and found["state"] != "OPEN":
        raise ApiError(409, f"upload {found['id']} is {found['state']} already")
    return found


def list_uploads(ctx: Context, request: HttpRequest, args: dict) -> Any:
    limit, offset = paging(request)
    total, rows = ctx.store.imports.uploads(limit, offset)
    return {"total": total, "limit": limit, "offset": offset,
            "uploads": [{"Id": r["id"], "State": r["state"], "Action": r["action"], "CreatedBy": r["created_by"],
                         "CreatedAt": r["created_at"], "Files": r["files"]} for r in rows]}


def new_upload(ctx: Context, request: HttpRequest, args: dict) -> Any:
    return {"Id": ctx.store.imports.new_upload(actor_of(request)), "State": "OPEN"}


def upload_file(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """One file, or an archive unpacked safely; its name in the X-Courier-Filename header. Each
    file is stored into Orthanc and held for the upload's action."""
    upload = _upload(ctx, args, open_only=True, request=request)
    # percent-encoded by the page and the command line: a header carries Latin-1 only
    name = unquote(request.headers.get("x-courier-filename") or "file").replace("\\", "/").strip("/")[:255] or "file"
    source = f"upload-{upload['id']}"
    data = request.body or b""
    kind = archives.kind_of(data)
    members: list[tuple[str, bytes]] = [(name, data)]
    skipped: list[tuple[str, str]] = []
    if kind is not None:
        try:
            unpacked = archives.unpack(data, kind)
        except archives.ArchiveError as exc:
            raise ApiError(400, f"{name}: {exc}") from None
        members = [(f"{name}/{member}", content) for member, content in unpacked.members]
        skipped = [(f"{name}/{member}", why) for member, why in unpacked.skipped]
    results = []
    for path, content in members:
        stored = ctx.importer.store_file(source, path, "upload", content)
        results.append({"File": path, "Outcome": stored.outcome, "Reason": stored.reason or None})
    for path, why in skipped:
        ctx.store.imports.rejected(source, path, "upload", 0, 0, "skipped", f"skipped: {why}")
        results.append({"File": path, "Outcome": "skipped", "Reason": why})
    return {"Upload": upload["id"], "Archive": kind, "Files": results,
            "Rejected": sum(1 for r in results if r["Outcome"] not in ("imported", "duplicate"))}


def get_upload(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """The upload's files, and what they hold grouped by patient, study and series (with one
    instance per series for a thumbnail: Orthanc's /instances/{id}/preview)."""
    upload = _upload(ctx, args)
    source = f"upload-{upload['id']}"
    _, files = ctx.store.imports.files(source, 10000, 0)
    studies: dict[str, dict] = {}
    for row in files:
        if not row["Study"] or not row["Series"]:
            continue
        study = studies.setdefault(row["Study"], {"Study": row["Study"], "Series": {}})
        series = study["Series"].setdefault(row["Series"], {"Series": row["Series"], "Instances": 0,
                                                             "Thumbnail": row["Instance"]})
        series["Instances"] += 1
    patients: dict[str, dict] = {}
    for study in studies.values():
        tags = _tags(ctx, f"/studies/{study['Study']}")
        patient = tags.get("PatientMainDicomTags", {})
        key = patient.get("PatientID", "")
        entry = patients.setdefault(key, {"PatientID": key, "PatientName": patient.get("PatientName", ""), "Studies": []})
        main = tags.get("MainDicomTags", {})
        series_list = []
        for series in study["Series"].values():
            series_tags = _tags(ctx, f"/series/{series['Series']}").get("MainDicomTags", {})
            series_list.append({**series, "Modality": series_tags.get("Modality", ""),
                                "SeriesDescription": series_tags.get("SeriesDescription", "")})
        entry["Studies"].append({"Study": study["Study"], "StudyDate": main.get("StudyDate", ""),
                                 "StudyDescription": main.get("StudyDescription", ""),
                                 "Instances": sum(s["Instances"] for s in series_list), "Series": series_list})
    outcomes: dict[str, int] = {}
    for row in files:
        outcomes[row["Outcome"] or "storing"] = outcomes.get(row["Outcome"] or "storing", 0) + 1
    return {"Id": upload["id"], "State": upload["state"], "Action": upload["action"], "CreatedBy": upload["created_by"],
            "Outcomes": outcomes, "Patients": list(patients.values()),
            "Rejected": [{"File": r["Path"], "Outcome": r["Outcome"], "Reason": r["Reason"]} for r in files
                         if r["State"] == "rejected"]}


def _tags(ctx: Context, path: str) -> dict:
    try:
        return ctx.rest.get_json(path)
    except Exception:  # noqa: BLE001 - gone from Orthanc meanwhile: shown without tags
        return {}


def upload_action(ctx: Context, request: HttpRequest, args: dict) -> Any:
    upload = _upload(ctx, args, open_only=True, request=request)
    action, body, actor = args["action"], json_body(request), actor_of(request)
    source = f"upload-{upload['id']}"
    if action not in ACTIONS:
        raise ApiError(404, f"no upload action {action!r}; use route, send or discard")
    if action == "discard":
        if not ctx.store.imports.close_upload(upload["id"], "DISCARDED", "discard", actor):
            raise ApiError(409, f"upload {upload['id']} was ended meanwhile")
        deleted = 0                      # claimed first: a route at the same moment finds it closed
        _, files = ctx.store.imports.files(source, 10000, 0)
        for row in files:
            if row["Outcome"] == "imported" and row["Instance"]:      # a duplicate was there before: it stays
                try:
                    ctx.rest.delete(f"/instances/{row['Instance']}")
                    deleted += 1
                except Exception:  # noqa: BLE001 - already gone
                    pass
        ctx.store.audit.record(AuditEvent("upload-discarded", actor=actor, detail={"upload": upload["id"],
                                                                                 "deleted": deleted}))
        return {"Id": upload["id"], "State": "DISCARDED", "Deleted": deleted}
    if action == "send":
        destination, profile = body.get("Destination"), body.get("Pseudonymize")
        if destination not in ctx.config.destinations:
            raise ApiError(400, f"Destination: no destination named {destination!r}")
        if profile is not None and profile not in ctx.config.profiles:
            raise ApiError(400, f"Pseudonymize: no pseudonymization profile {profile!r}")
        check_nodes(ctx, request, send_to=destination)
        targets = [Target(f"upload:{upload['id']}", (destination,), profile)]
    elif body.get("Route"):
        route = next((r for r in ctx.config.routes if r.name == body["Route"]), None)
        if route is None:
            raise ApiError(400, f"Route: no route named {body['Route']!r}")
        targets = [Target(route.name, route.destinations, route.pseudonymize if route.pseudonymize_on == "Send" else None,
                          route.priority)]
    else:
        targets = _as_received(ctx, source)
    for target in targets:               # the user's MaySendTo holds for every destination, named or routed
        for destination in target.destinations:
            check_nodes(ctx, request, send_to=destination)
    if not ctx.store.imports.close_upload(upload["id"], "SENT" if action == "send" else "ROUTED", action, actor):
        raise ApiError(409, f"upload {upload['id']} was ended meanwhile")
    routed = ctx.importer.route(source, None, targets, actor)
    ctx.wake_workers()
    return {"Id": upload["id"], "State": "SENT" if action == "send" else "ROUTED", "Files": routed,
            "Routes": [t.route for t in targets]}


def _as_received(ctx: Context, source: str) -> list[Target]:
    """The routes whose Match fires for the upload's studies, as if they had been received
    (evaluated on each study's tags; a route that fires for any of them takes all)."""
    fired: dict[str, Target] = {}
    for study_id in ctx.store.imports.studies_to_route(source):
        tags = _tags(ctx, f"/studies/{study_id}")
        flat = {**tags.get("PatientMainDicomTags", {}), **tags.get("MainDicomTags", {})}
        for trigger in TRIGGERS:
            for route in evaluate(ctx.config.routes, trigger, flat, ctx.run_script).fired:
                fired.setdefault(route.name, Target(route.name, route.destinations,
                                                    route.pseudonymize if route.pseudonymize_on == "Send" else None,
                                                    route.priority))
    if not fired:
        raise ApiError(409, "no route fires for these studies as received; name a Route or send them to a Destination")
    return list(fired.values())

