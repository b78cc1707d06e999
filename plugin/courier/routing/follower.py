"""Follows Orthanc's change log and turns changes into tasks, durably.

Orthanc records every change (NewInstance, StableSeries, StableStudy...) in its own database.
This thread reads `/changes?since=<cursor>`, evaluates the routes, and writes the new tasks
together with the advanced cursor in one store transaction. A change is "acknowledged" only
when that transaction commits, so a router killed at any moment re-reads what it had not
finished. Orthanc's change callback only wakes this thread up: no work on the ingest path.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping, Optional, Sequence

from courier.config.match import CONTEXT_KEYS
from courier.config.routes import Route
from courier.deid.pseudonymizer import method_marker as marker
from courier.orthanc_rest import OrthancHttpError, OrthancRest
from courier.routing.callers import CallerPolicy
from courier.routing.rules import evaluate
from courier.store.records import AuditEvent, NewTask
from courier.store.store import Store

log = logging.getLogger("courier.ingest")

CURSOR = "orthanc-changes"
TRIGGER_OF_CHANGE = {"NewInstance": "Instance", "StableSeries": "StableSeries", "StableStudy": "StableStudy"}
LEVEL_OF_TRIGGER = {"Instance": "Instance", "StableSeries": "Series", "StableStudy": "Study"}
PAGE = 500
COALESCE_SECONDS = 0.05     # gather the changes of a burst into one /changes read


class ChangeFollower:
    def __init__(self, store: Store, rest: OrthancRest, routes: Sequence[Route], callers: CallerPolicy,
                 run_script: Optional[Callable[[Route, Mapping[str, Any]], bool]],
                 on_tasks: Callable[[], None] = lambda: None) -> None:
        self.store, self.rest, self.routes, self.callers = store, rest, tuple(routes), callers
        self.run_script, self.on_tasks = run_script, on_tasks
        self.triggers = {route.trigger for route in self.routes}
        self.ingest_routes = tuple(r for r in self.routes if r.pseudonymize_on == "Ingest")
        self.send_routes = tuple(r for r in self.routes if r.pseudonymize_on != "Ingest")
        self.needs_tags = bool(self.ingest_routes) or any(
            route.condition_script or any(key not in CONTEXT_KEYS for key, _ in route.match) for route in self.routes)
        self.needs_context = any(route.condition_script or route.allowed_calling_aets is not None
                                 or any(key in CONTEXT_KEYS for key, _ in route.match) for route in self.routes)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.running = False

    def start(self) -> None:
        if self.store.tasks.cursor(CURSOR) is None:
            # First start: route what arrives from now on, not what Orthanc already held.
            last = self.rest.get_json("/changes", last="")["Last"]
            self.store.tasks.enqueue([], cursor=(CURSOR, last))
        self._thread = threading.Thread(target=self._loop, name="courier-changes", daemon=True)
        self._thread.start()
        self.running = True

    def stop(self, timeout: float = 5.0) -> None:
        self.running = False
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.follow_once()
            except Exception:
                log.exception("reading Orthanc's changes failed; retrying")
                done = True
            if done:
                self._wake.wait(1.0)
                self._stop.wait(COALESCE_SECONDS)
                self._wake.clear()

    def follow_once(self) -> bool:
        """Process one page of changes; True when Orthanc has nothing newer."""
        since = self.store.tasks.cursor(CURSOR) or 0
        page = self.rest.get_json("/changes", since=since, limit=PAGE)
        changes = page.get("Changes", [])
        tasks: list[NewTask] = []
        audit: list[AuditEvent] = []
        fetching = self.store.tasks.job_study_ids() if changes else set()
        for change in changes:
            trigger = TRIGGER_OF_CHANGE.get(change["ChangeType"])
            if trigger is None:
                continue
            try:
                if fetching and self._study_of(trigger, change["ID"]) in fetching:
                    continue                # fetched by a transfer job: the job delivers it, not the routes
                self._route(trigger, change["ID"], tasks, audit)
            except OrthancHttpError as exc:
                if exc.status != 404:
                    raise   # Orthanc unavailable: leave the cursor, read again later
                # deleted before we looked at it: nothing left to route
        last = max((c["Seq"] for c in changes), default=since)
        if changes:
            self.store.tasks.enqueue(tasks, audit, cursor=(CURSOR, last))
            if tasks:
                self.on_tasks()
        return bool(page.get("Done", True))

    def _study_of(self, trigger: str, resource_id: str) -> str:
        if trigger == "StableStudy":
            return resource_id
        if trigger == "StableSeries":
            return self.rest.get_json(f"/series/{resource_id}")["ParentStudy"]
        return self.rest.get_json(f"/instances/{resource_id}/study")["ID"]

    def _route(self, trigger: str, resource_id: str, tasks: list[NewTask], audit: list[AuditEvent]) -> None:
        level = LEVEL_OF_TRIGGER[trigger]
        metadata = None
        if trigger == "Instance" and self.callers.mode != "Any":
            metadata = self.rest.get_json(f"/instances/{resource_id}/metadata", expand="")
            if metadata.get("Origin") == "DicomProtocol":
                reason = self.callers.refuse_ip(metadata.get("RemoteAET", ""), metadata.get("RemoteIP", ""))
                if reason:
                    self.rest.delete(f"/instances/{resource_id}")
                    audit.append(AuditEvent("instance-rejected", actor=metadata.get("RemoteAET", "?"),
                                            resource_id=resource_id, detail={"reason": reason,
                                                                             "remote_ip": metadata.get("RemoteIP")}))
                    return
        if trigger not in self.triggers:
            return
        tags = self._tags(level, resource_id, metadata)
        result = evaluate(self.send_routes, trigger, tags, self.run_script)
        methods = str(tags.get("DeidentificationMethod") or "").split("\\")
        pseudonymized_on_ingest = [r for r in self.ingest_routes if r.trigger == trigger and marker(r.pseudonymize) in methods]
        for route, reason in result.refused:
            audit.append(AuditEvent("route-refused-caller", actor=str(tags.get("CallingAet") or "?"),
                                    route=route.name, resource_id=resource_id, detail={"reason": reason}))
        for route, error in result.errors:
            audit.append(AuditEvent("condition-error", route=route.name, resource_id=resource_id,
                                    detail={"error": error}))
        for route in result.fired + tuple(pseudonymized_on_ingest):
            profile = route.pseudonymize if route.pseudonymize_on == "Send" else None   # ingest: already done
            for destination in route.destinations:
                tasks.append(NewTask(route.name, destination, level, resource_id, route.priority,
                                     route.delete_after_delivery, profile))

    def _tags(self, level: str, resource_id: str, metadata: Optional[dict] = None) -> dict[str, Any]:
        """Tags of the resource (its first instance's, for a series or a study) plus context keys;
        only what the routes use is read (a pass-through route reads nothing)."""
        if not (self.needs_tags or self.needs_context):
            return {}
        if level == "Instance":
            instance_id = resource_id
        else:
            path = {"Series": "series", "Study": "studies"}[level]
            instances = self.rest.get_json(f"/{path}/{resource_id}/instances")
            if not instances:
                raise OrthancHttpError(404, f"{level} {resource_id} has no instances")
            instance_id = instances[0]["ID"]
        tags = dict(self.rest.get_json(f"/instances/{instance_id}/simplified-tags")) if self.needs_tags else {}
        if metadata is None:
            metadata = self.rest.get_json(f"/instances/{instance_id}/metadata", expand="")
        tags.update(CallingAet=metadata.get("RemoteAET", ""), CalledAet=metadata.get("CalledAET", ""),
                    RemoteIp=metadata.get("RemoteIP", ""))
        return tags
