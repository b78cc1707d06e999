"""REST handlers for routes: the configured list with task counts, and the rule tester."""
from __future__ import annotations

import io
from dataclasses import replace
from typing import Any, Mapping, Optional

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue

from courier.config.match import CONTEXT_KEYS
from courier.config.routes import TRIGGERS
from courier.deid.ingest_gate import top_level_tags
from courier.deid.pseudonymizer import PseudonymizationError
from courier.delivery.modify import Modifier, ModifyContext, ModifyError
from courier.errors import ApiError, ConfigError
from courier.host import HttpRequest
from courier.routing.rules import evaluate
from courier.web.guard import media_type, rights_of
from courier.web.http import Context, json_body


def routes(ctx: Context, request: Optional[HttpRequest] = None, args: Optional[dict] = None) -> Any:
    counts = ctx.store.tasks.route_counts()
    return [{"Name": r.name, "Trigger": r.trigger, "Match": r.match_spec, "Condition": r.condition_script,
             "Destinations": list(r.destinations), "DeleteAfterDelivery": r.delete_after_delivery,
             "Priority": r.priority, "AllowedCallingAets": None if r.allowed_calling_aets is None
             else list(r.allowed_calling_aets), "Fallback": r.fallback, "Pseudonymize": r.pseudonymize,
             "PseudonymizeOn": r.pseudonymize_on if r.pseudonymize else None, "Tasks": counts.get(r.name, {})}
            for r in ctx.config.routes]


def test_routes(ctx: Context, request: HttpRequest, args: dict) -> Any:
    """Which routes a DICOM file (application/dicom) or typed tags (JSON) would fire, and what
    each route's pseudonymization would make of it. Nothing is stored or sent."""
    data = bytes(request.body or b"")
    if media_type(request) == "application/dicom":
        try:
            tags = top_level_tags(data)
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            raise ApiError(400, f"not a readable DICOM file: {type(exc).__name__}") from None
        context = {}
    else:
        body = json_body(request)          # an object, its fields typed (courier.web.bodies.ROUTE_TEST)
        tags = {k: str(v) for k, v in (body.get("Tags") or {}).items()}
        context = {k: str(body[k]) for k in ("CallingAet", "CalledAet", "RemoteIp") if body.get(k)}
        data = None
        ctx = _draft(ctx, request, body.get("Draft"))
    tags.update(context)
    fired, refused, errors = [], [], []
    for trigger in TRIGGERS:
        result = evaluate(ctx.config.routes, trigger, tags, ctx.run_script)
        fired += [r.name for r in result.fired]
        refused += [{"Route": r.name, "Reason": reason} for r, reason in result.refused]
        errors += [{"Route": r.name, "Error": error} for r, error in result.errors]
    previews, modified = {}, {}
    for route in ctx.config.routes:
        if route.name in fired and route.modify:
            modifier = Modifier(route.modify, ctx.hooks.get(route.name))
            modified[route.name] = _preview(ctx, route.pseudonymize, data, tags, modifier,
                                            ModifyContext(route.name, route.destinations[0]))
        elif route.name in fired and route.pseudonymize and route.pseudonymize not in previews:
            previews[route.pseudonymize] = _preview(ctx, route.pseudonymize, data, tags)
    return {"Fired": fired, "Refused": refused, "Errors": errors, "Pseudonymized": previews, "Modified": modified}


def _draft(ctx: Context, request: HttpRequest, draft: Optional[dict]) -> Context:
    """The tester's context for a draft configuration (checked as a change would be), or `ctx`.
    Admins only: a draft runs its scripts and reads the secrets it names, as a change would."""
    if draft is None:
        return ctx
    rights = rights_of(ctx, request)
    if rights is None or rights.role != "admin":
        raise ApiError(403, "testing a draft configuration needs the admin role (its scripts run)")
    if ctx.runtime is None:
        raise ApiError(503, "the runtime configuration is not available")
    try:
        built = ctx.runtime.build(draft)
    except ConfigError as exc:
        raise ApiError(400, f"Draft: {exc}") from None
    return replace(ctx, config=built.config, run_script=built.run_script, pseudonymizers=built.pseudonymizers,
                   hooks=built.hooks)


def _preview(ctx: Context, profile: Optional[str], data: Optional[bytes], tags: Mapping[str, str],
             modifier: Optional[Modifier] = None, context: Optional[ModifyContext] = None) -> dict:
    """What a route would send, as tags: the file or the typed tags, modified (a route's Modify),
    then pseudonymized with `profile`; {"Refused": why} when either refuses."""
    from pydicom.dataset import Dataset
    try:
        if data is not None:
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        else:
            dataset = Dataset()
            for keyword, value in tags.items():
                if keyword not in CONTEXT_KEYS:
                    if tag_for_keyword(keyword) is None:      # setattr would set a plain attribute
                        raise ApiError(400, f"Tags.{keyword}: not a DICOM keyword")
                    try:
                        setattr(dataset, keyword, value)
                    except (ValueError, TypeError):
                        raise ApiError(400, f"Tags.{keyword}: not a DICOM keyword or not a valid value") from None
        if modifier is not None:
            modifier.apply(dataset, context)
        if profile is not None:
            dataset = ctx.pseudonymizers[profile].pseudonymize(dataset).dataset
    except PseudonymizationError as exc:
        return {"Refused": f"{exc.disposition}: {exc.reason}"}
    except ModifyError as exc:
        return {"Refused": f"modify-error: {exc}"}
    return {e.keyword: _text(e.value) for e in dataset if e.keyword and e.VR not in ("SQ", "OB", "OW", "UN")}


def _text(value: Any) -> str:
    """A value as DICOM writes it: several values separated by backslashes, not a Python list."""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join("" if item is None else str(item) for item in value)
    return "" if value is None else str(value)
