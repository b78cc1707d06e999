"""Pure rule evaluation: (route list, trigger, tags) -> which routes fire.

A route fires when its `Match` conditions hold (compiled by courier.config.match), its condition
script returns true and the calling AE is allowed; a Fallback route fires only when no other
route would accept the resource. Mercure's rule evaluation, as one small pure function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from courier.config.routes import Route
from courier.store.records import AuditEvent, NewTask


@dataclass(frozen=True)
class RoutingResult:
    fired: tuple[Route, ...]
    refused: tuple[tuple[Route, str], ...]        # matched, but the calling AE is not allowed
    errors: tuple[tuple[Route, str], ...]         # a condition script raised


ScriptRunner = Callable[[Route, Mapping[str, Any]], bool]


def evaluate(routes: Sequence[Route], trigger: str, tags: Mapping[str, Any],
             run_script: Optional[ScriptRunner] = None) -> RoutingResult:
    """Which routes of `trigger` fire for a resource whose tags (and context keys) are `tags`.

    Non-fallback routes fire when every Match condition holds, the condition script (if any)
    returns true, and the calling AE is in AllowedCallingAets (when set). A Fallback route fires
    only when no non-fallback route of any trigger would accept the resource.
    """
    refused: list[tuple[Route, str]] = []
    errors: list[tuple[Route, str]] = []
    has_fallback = any(r.fallback and r.trigger == trigger for r in routes)

    def accepts(route: Route, record: bool) -> bool:
        if not route.matches(tags):
            return False
        if route.condition_script and run_script is not None:
            try:
                if not run_script(route, tags):
                    return False
            except Exception as exc:  # a user script: record, never crash the router
                if record:
                    errors.append((route, f"{type(exc).__name__}: {exc}"))
                return False
        if route.allowed_calling_aets is not None and tags.get("CallingAet") not in route.allowed_calling_aets:
            if record:
                refused.append((route, f"calling AE {tags.get('CallingAet')!r} is not in AllowedCallingAets"))
            return False
        return True

    fired = [r for r in routes if not r.fallback and r.trigger == trigger and accepts(r, True)]
    if has_fallback and not fired:
        others = [r for r in routes if not r.fallback and r.trigger != trigger]
        if not any(accepts(r, False) for r in others):
            fired = [r for r in routes if r.fallback and r.trigger == trigger]
    return RoutingResult(tuple(fired), tuple(refused), tuple(errors))


def required_keys(routes: Iterable[Route]) -> set[str]:
    return {key for route in routes for key, _ in route.match}


Ingested = Callable[[Route, Mapping[str, Any]], bool]      # did this Ingest route's profile make these tags?


def tasks_for(routes: Sequence[Route], trigger: str, level: str, resource_id: str, tags: Mapping[str, Any],
              run_script: Optional[ScriptRunner], ingested: Ingested,
              only: Optional[Route] = None) -> tuple[list[NewTask], list[AuditEvent]]:
    """The tasks (one per fired route and destination) and audit lines for one resource. Ingest
    routes fire for what their profile already pseudonymized when Orthanc received it (and send it
    as it is stored). `only`: keep what concerns that route (a completion is per route)."""
    result = evaluate([r for r in routes if r.pseudonymize_on != "Ingest"], trigger, tags, run_script)
    fired = list(result.fired) + [r for r in routes if r.pseudonymize_on == "Ingest" and r.trigger == trigger
                                  and ingested(r, tags)]

    def mine(route: Route) -> bool:
        return only is None or route is only
    audit = [AuditEvent("route-refused-caller", actor=str(tags.get("CallingAet") or "?"), route=route.name,
                        resource_id=resource_id, detail={"reason": reason}) for route, reason in result.refused if mine(route)]
    audit += [AuditEvent("condition-error", route=route.name, resource_id=resource_id, detail={"error": error})
              for route, error in result.errors if mine(route)]
    tasks = [NewTask(route.name, destination, level, resource_id, route.priority, route.delete_after_delivery,
                     route.pseudonymize if route.pseudonymize_on == "Send" else None)   # Ingest: already done
             for route in fired if mine(route) for destination in route.destinations]
    return tasks, audit
