"""REST handlers of the runtime configuration (engine.runtime): the document in force, edits of
one entry or of the whole, the numbered versions, their differences, a restore and an export.

Every change is checked by the parser of orthanc.json: a problem is a 400 whose message names
the JSON path as a start-up error would ("Courier.Routes[0].Destinations[0]: no destination...").
A change names the version it was made from (`Base`); a 409 says another change came first.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from courier.config import runtime
from courier.errors import ApiError, ConfigError
from courier.host import HttpRequest, HttpResponse
from courier.store.config_versions import ConfigConflict
from courier.web.http import Context, actor_of, int_param, json_body, paging

# {section} of /courier/config/{section}/{name} -> where its entries live in the document
SECTIONS = {"routes": ("Courier", "Routes"), "folders": ("Courier", "Folders"), "archives": ("Courier", "Archives"),
            "buckets": ("Courier", "Buckets"), "profiles": ("Courier", "Pseudonymization"),
            "node-settings": ("Courier", "Nodes"),
            "modalities": ("DicomModalities",), "dicomweb": ("DicomWeb", "Servers"), "peers": ("OrthancPeers",),
            "scripts": ("Scripts",)}


def _runtime(ctx: Context):
    if ctx.runtime is None or ctx.runtime.current is None:
        raise ApiError(503, "the runtime configuration is not available")
    return ctx.runtime


def current(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """The version in force on this router (and a later one it could not apply, if any)."""
    live = _runtime(ctx)
    return {"Version": live.version, "Document": live.current.document,
            "NotApplied": live.failed_version if live.failed_version > live.version else None,
            "Sections": {name: ".".join(path) for name, path in SECTIONS.items()}}


def _run(ctx: Context, action: Callable[[Any], Any]) -> Any:
    """Run a change on the runtime configuration; its errors as the API's."""
    live = _runtime(ctx)
    try:
        version, changes = action(live)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from None
    except ConfigConflict as exc:
        raise ApiError(409, f"{exc}: reload it and make the change again") from None
    ctx.wake_workers()
    return {"Version": version.version, "Changes": changes}


def replace(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """The whole document; without Base it replaces whatever the latest version is."""
    body = json_body(request)
    return _run(ctx, lambda live: live.change(body["Document"], actor_of(request), body.get("Comment") or "",
                                              base=body.get("Base")))


def _entries(document: dict, section: str, create: bool) -> Any:
    where: Any = document
    path = SECTIONS[section]
    for key in path[:-1]:
        if not isinstance(where.get(key), dict):
            if not create:
                return None
            where[key] = {}
        where = where[key]
    if path[-1] not in where:
        if not create:
            return None
        where[path[-1]] = [] if section == "routes" else {}
    return where[path[-1]]


def _section(args: dict) -> str:
    if args["section"] not in SECTIONS:
        raise ApiError(404, f"no configuration section {args['section']!r}: one of {', '.join(SECTIONS)}")
    return args["section"]


def put_entry(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """Create or replace one route (by Name), destination, profile, node or script, in the latest version."""
    section, name = _section(args), args["name"]
    body = json_body(request)
    entry = body["Entry"]
    if section == "routes" and not isinstance(entry, dict):
        raise ApiError(400, "field 'Entry': a route is an object")
    if section == "scripts" and not isinstance(entry, str):
        raise ApiError(400, "field 'Entry': a script is its Python source, a string")

    def change(document: dict) -> None:
        entries = _entries(document, section, create=True)
        if section == "routes":
            route = {"Name": name, **{k: v for k, v in entry.items() if k != "Name"}}
            at = next((i for i, r in enumerate(entries) if isinstance(r, dict) and r.get("Name") == name), None)
            if at is None:
                entries.append(route)
            else:
                entries[at] = route
        else:
            entries[name] = entry
    return _run(ctx, lambda live: live.edit(change, actor_of(request), body.get("Comment") or f"set {section} {name}",
                                            base=body.get("Base")))


def delete_entry(ctx: Context, request: HttpRequest, args: dict) -> Any:
    section, name = _section(args), args["name"]
    base = request.query.get("base")

    def change(document: dict) -> None:
        entries = _entries(document, section, create=False)
        if section == "routes" and isinstance(entries, list):
            kept = [r for r in entries if not (isinstance(r, dict) and r.get("Name") == name)]
            found = len(kept) != len(entries)
            entries[:] = kept
        else:
            found = isinstance(entries, dict) and entries.pop(name, None) is not None
        if not found:
            raise ApiError(404, f"no {section} entry named {name!r} in the latest configuration version")
    return _run(ctx, lambda live: live.edit(change, actor_of(request),
                                            request.query.get("comment") or f"deleted {section} {name}",
                                            base=None if base in (None, "") else int_param(base, "base", 0, 1)))


def versions(ctx: Context, request: HttpRequest, args: dict) -> Any:
    limit, offset = paging(request)
    return {"Current": _runtime(ctx).version,
            "Versions": [v.summary() for v in ctx.store.config_versions.list(limit, offset)]}


def _stored(ctx: Context, number: int):
    version = ctx.store.config_versions.get(number)
    if version is None:
        raise ApiError(404, f"no configuration version {number}")
    return version


def version(ctx: Context, request: HttpRequest, args: dict) -> Any:
    stored = _stored(ctx, int_param(args["id"], "id", 0, 1, where="path parameter"))
    return {**stored.summary(), "Document": stored.document}


def compare(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """What changed from version `from` (default: the one before) to {id}."""
    number = int_param(args["id"], "id", 0, 1, where="path parameter")
    to = _stored(ctx, number)
    since = int_param(request.query.get("from"), "from", number - 1, 0)
    before = ctx.store.config_versions.get(since) if since else None
    if since and before is None:
        raise ApiError(404, f"no configuration version {since}")
    return {"From": since, "To": number, "Changes": runtime.diff(before.document if before else {}, to.document)}


def restore(ctx: Context, request: HttpRequest, args: dict) -> Any:
    number = int_param(args["id"], "id", 0, 1, where="path parameter")
    _stored(ctx, number)
    body = json_body(request) if request.body else {}
    return _run(ctx, lambda live: live.restore(number, actor_of(request), base=body.get("Base")))


def export(ctx: Context, request: HttpRequest, args: dict) -> HttpResponse:
    """The configuration in force as orthanc.json sections, with the scripts to write in
    ScriptsDirectory (node passwords stay where they are)."""
    live = _runtime(ctx)
    text = json.dumps(runtime.export(live.current.document), indent=2, ensure_ascii=False)
    return HttpResponse(200, text.encode("utf-8"), "application/json", {
        "Content-Disposition": f'attachment; filename="courier-config-v{live.version}.json"'})
