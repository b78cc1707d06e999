"""Follows Orthanc's change log and turns changes into tasks, durably.

Orthanc records every change in its own database. This thread reads `/changes?since=<cursor>`
and, for each NewInstance, evaluates the Instance routes and records the arrival (for the
StableSeries and StableStudy routes, which Courier completes itself: routing.completer), then
writes the new tasks, the arrivals and the advanced cursor in one store transaction, if the cursor
is still where this page began (several routers on one database follow the same change log: the
first to commit a page wins, the others read on). A change is "acknowledged" only when that
transaction commits, so a router killed at any moment re-reads what it had not finished.
Orthanc's own StableSeries/StableStudy changes are not used: Orthanc computes them in its process
memory and loses them on any stop. Orthanc's change callback only wakes this thread up: no work
on the ingest path.

The new instances of a page are read in one POST /tools/bulk-content (their size, parents and
metadata: calling AE, called AE, IP, origin, reception time), not one call each; the ones that came
by C-STORE become the traffic log's C-STORE rows (Bursts), written in the page's transaction, and
an Instance task's manifest (its SOP Instance UID and size) is written with the task, so that the
worker that claims it does not list it again.
"""
from __future__ import annotations

import calendar
import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Optional, Sequence

from courier import threads
from courier.config.routes import Route
from courier.deid.ingest_gate import MadeOnIngest
from courier.deid.marker import MAC_KEY
from courier.deid.pseudonymizer import Pseudonymizer, method_marker
from courier.orthanc_rest import OrthancHttpError, OrthancRest
from courier.routing.callers import CallerPolicy
from courier.routing.completer import Completer
from courier.routing.rules import tasks_for
from courier.routing.tags import ResourceTags
from courier.store.records import Arrival, AuditEvent, ManifestItem, NewTask, TrafficEvent, orthanc_instance_id
from courier.store.store import Store
from courier.store.traffic import GAP_SECONDS

log = logging.getLogger("courier.ingest")

CURSOR = "orthanc-changes"
PAGE = 500
COALESCE_SECONDS = 0.05     # gather the changes of a burst into one /changes read
SERIES_CACHE = 1000         # parents of recent series: they never change
MARK_CACHE = 1000           # Courier marks of recent instances, for the routes of one resource


def reception_time(metadata: Mapping[str, Any], default: float) -> float:
    """Orthanc's ReceptionDate metadata ("20240131T235959", UTC) as Unix time; `default` without it."""
    try:
        return float(calendar.timegm(time.strptime(str(metadata.get("ReceptionDate", "")), "%Y%m%dT%H%M%S")))
    except ValueError:
        return default


class Bursts:
    """The C-STOREs of one page of changes as traffic events: the instances of one calling AE, called
    AE and IP (and outcome) that arrived less than `gap` seconds apart make one event (the store
    merges it with that caller's latest row, across pages)."""

    def __init__(self, clock: Callable[[], float], gap: float = GAP_SECONDS) -> None:
        self.clock, self.gap = clock, gap
        self.events: list[TrafficEvent] = []
        self._open: dict[tuple, int] = {}

    def add(self, metadata: Optional[Mapping[str, Any]], size: int, refusal: Optional[str] = None) -> None:
        if not metadata or metadata.get("Origin") != "DicomProtocol":
            return                      # REST, plugins, Lua: not DICOM traffic
        at = reception_time(metadata, self.clock())
        status = "refused" if refusal else "accepted"
        key = (metadata.get("RemoteAET", ""), metadata.get("CalledAET", ""), metadata.get("RemoteIP", ""), status,
               refusal or "")
        index = self._open.get(key)
        if index is not None:
            last = self.events[index]
            if last.at - self.gap <= at <= last.last_at + self.gap:
                self.events[index] = dataclasses.replace(
                    last, at=min(last.at, at), last_at=max(last.last_at, at), operations=last.operations + 1,
                    instances=last.instances + 1, bytes=last.bytes + size)
                return
        self._open[key] = len(self.events)
        self.events.append(TrafficEvent("C-STORE", key[0], status, at, at, called_aet=key[1], remote_ip=key[2],
                                        instances=1, bytes=size, detail=key[4]))


def claims_ingest(route: Route, tags: Mapping[str, Any]) -> bool:
    """The instance says (DeidentificationMethod) that route's profile made it: a cheap first
    look, which anybody can write; pseudonymized_on_ingest decides."""
    return method_marker(route.pseudonymize or "") in str(tags.get("DeidentificationMethod") or "").split("\\")


def pseudonymized_on_ingest(route: Route, tags: Mapping[str, Any], pseudonymizers: Mapping[str, Pseudonymizer]) -> bool:
    """That route's profile pseudonymized the instance when Orthanc received it: its keyed mark
    (deid.marker) says so. `tags`: Orthanc's tags with the mark element under marker.MAC_KEY."""
    pseudonymizer = pseudonymizers.get(route.pseudonymize or "")
    return pseudonymizer is not None and pseudonymizer.made_this(tags)


class ChangeFollower:
    def __init__(self, store: Store, rest: OrthancRest, routes: Sequence[Route], callers: CallerPolicy,
                 run_script: Optional[Callable[[Route, Mapping[str, Any]], bool]],
                 on_tasks: Callable[[], None] = lambda: None,
                 pseudonymizers: Optional[Mapping[str, Pseudonymizer]] = None,
                 made: Optional[MadeOnIngest] = None) -> None:
        """`pseudonymizers` (by profile) recognise what an Ingest route's profile made; without
        them no Ingest route fires. `made`: what this process's ingest gate made, known without
        reading it back."""
        self.store, self.rest, self.callers, self.on_tasks, self.made = store, rest, callers, on_tasks, made
        self._marks: OrderedDict[str, bytes] = OrderedDict()
        self._pass = threading.Lock()          # held for one pass; a reconfiguration waits for its end
        self.reconfigure(routes, run_script, pseudonymizers)
        self._series: OrderedDict[str, dict] = OrderedDict()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.running = False

    def reconfigure(self, routes: Sequence[Route], run_script: Optional[Callable[[Route, Mapping[str, Any]], bool]],
                    pseudonymizers: Optional[Mapping[str, Pseudonymizer]] = None) -> None:
        """New routes (a runtime configuration change): taken between two passes, never within one."""
        with self._pass:
            self.routes, self.run_script = tuple(routes), run_script
            self.pseudonymizers = dict(pseudonymizers or {})
            self.instance_routes = tuple(r for r in self.routes if r.trigger == "Instance")
            self.tracks_arrivals = any(r.trigger != "Instance" for r in self.routes)
            self.tags = ResourceTags(self.rest, self.routes)
            self.completer = Completer(self.store, self.routes, self.tags, run_script, self._ingested)

    def start(self) -> None:
        if self.store.tasks.cursor(CURSOR) is None:
            # First start: route what arrives from now on, not what Orthanc already held.
            last = self.rest.get_json("/changes", last="")["Last"]
            self.store.tasks.enqueue([], cursor=(CURSOR, last))
        self._thread = threads.Thread(target=self._loop, name="courier-changes", daemon=True)
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
            wait = 1.0
            try:
                with self._pass:
                    done = self.follow_once()
                    created, due_in = self.completer.run()
                if created:
                    self.on_tasks()
                if due_in is not None:
                    wait = min(wait, due_in + 0.01)
            except Exception:
                log.exception("reading Orthanc's changes failed; retrying")
                done = True
            if done:
                self._wake.wait(wait)
                self._stop.wait(COALESCE_SECONDS)
                self._wake.clear()

    def follow_once(self) -> bool:
        """Process one page of changes; True when Orthanc has nothing newer."""
        since = self.store.tasks.cursor(CURSOR) or 0
        page = self.rest.get_json("/changes", since=since, limit=PAGE)
        changes = page.get("Changes", [])
        tasks: list[NewTask] = []
        audit: list[AuditEvent] = []
        arrivals: list[Arrival] = []
        fetching = self.store.tasks.job_study_ids() if changes else set()
        new = [c["ID"] for c in changes if c["ChangeType"] == "NewInstance"]
        known = self._bulk(new)
        bursts = Bursts(self.store.clock)
        imported = {i for i in self.store.imports.held(new) if self._came_by_rest(i, known.get(i))}
        for change in changes:
            if change["ChangeType"] != "NewInstance" or change["ID"] in imported:
                continue                # an import (watched folder, upload) routes what it stored itself
            try:
                self._new_instance(change["ID"], change["Seq"], fetching, tasks, audit, arrivals,
                                   known.get(change["ID"]), bursts)
            except OrthancHttpError as exc:
                if exc.status != 404:
                    raise   # Orthanc unavailable: leave the cursor, read again later
                # deleted before we looked at it: nothing left to route
        last = max((c["Seq"] for c in changes), default=since)
        if changes:
            if self.store.tasks.enqueue(tasks, audit, cursor=(CURSOR, last), arrivals=arrivals, expect=since,
                                        received=len(new), traffic=bursts.events) is None:
                return False            # another router on this database took these changes first: read on
            if tasks:
                self.on_tasks()
        return bool(page.get("Done", True))

    def _bulk(self, instance_ids: Sequence[str]) -> dict[str, dict]:
        """Each instance's /instances/{id} answer with its "Metadata", by ID, in one call per PAGE
        (Orthanc leaves out the instances already deleted)."""
        if not instance_ids:
            return {}
        answer = self.rest.post_json("/tools/bulk-content", {"Resources": list(instance_ids), "Level": "Instance",
                                                             "Metadata": True})
        return {entry["ID"]: entry for entry in answer or () if entry.get("Type") == "Instance"}

    def _came_by_rest(self, instance_id: str, known: Optional[dict] = None) -> bool:
        """An import stores through the REST API; the same UIDs received again later by C-STORE (after
        Orthanc deleted the imported copy) are a new arrival, for the routes."""
        if known is not None and "Origin" in known.get("Metadata", {}):
            return known["Metadata"]["Origin"] != "DicomProtocol"
        try:
            return self.rest.get_bytes(f"/instances/{instance_id}/metadata/Origin").decode() != "DicomProtocol"
        except OrthancHttpError as exc:
            if exc.status == 404:
                return True             # gone already: nothing for the routes either
            raise

    def _series_of(self, series_id: str) -> dict:
        series = self._series.get(series_id)
        if series is None:
            series = self._series[series_id] = self.rest.get_json(f"/series/{series_id}")
            while len(self._series) > SERIES_CACHE:
                self._series.popitem(last=False)
        return series

    def _new_instance(self, instance_id: str, seq: int, fetching: set, tasks: list[NewTask], audit: list[AuditEvent],
                      arrivals: list[Arrival], known: Optional[dict] = None, bursts: Optional[Bursts] = None) -> None:
        """`known`: the instance's bulk-content entry (with its Metadata), which saves reading it here."""
        bursts = bursts or Bursts(self.store.clock)
        info = known
        metadata = known.get("Metadata") if known is not None else None
        if self.tracks_arrivals or fetching:
            info = info or self.rest.get_json(f"/instances/{instance_id}")
            series = self._series_of(info["ParentSeries"])
            if series["ParentStudy"] in fetching:
                bursts.add(metadata, info.get("FileSize", 0))
                return                  # fetched by a transfer job: the job delivers it, not the routes
        if self.callers.mode != "Any":
            if metadata is None:
                metadata = self.rest.get_json(f"/instances/{instance_id}/metadata", expand="")
            if metadata.get("Origin") == "DicomProtocol":
                reason = self.callers.refuse_ip(metadata.get("RemoteAET", ""), metadata.get("RemoteIP", ""))
                if reason:
                    bursts.add(metadata, (info or {}).get("FileSize", 0), reason)
                    self.rest.delete(f"/instances/{instance_id}")
                    audit.append(AuditEvent("instance-rejected", actor=metadata.get("RemoteAET", "?"),
                                            resource_id=instance_id, detail={"reason": reason,
                                                                             "remote_ip": metadata.get("RemoteIP")}))
                    return
        bursts.add(metadata, (info or {}).get("FileSize", 0))
        if self.instance_routes:
            tags = self.tags.of("Instance", instance_id, metadata)
            fired, notes = tasks_for(self.routes, "Instance", "Instance", instance_id, tags, self.run_script,
                                     lambda route, tags: self._ingested(route, tags, instance_id))
            if info is not None and fired:          # what the tasks deliver, known already: not listed again
                manifest = (ManifestItem.of_instance({**info, "ID": instance_id}),)
                fired = [dataclasses.replace(task, manifest=manifest) for task in fired]
            tasks += fired
            audit += notes
        if self.tracks_arrivals:
            tags = series["MainDicomTags"]
            arrivals.append(Arrival(instance_id, info["ParentSeries"], series["ParentStudy"],
                                    info["MainDicomTags"].get("SOPInstanceUID", ""), info.get("FileSize", 0),
                                    tags.get("Modality", ""), tags.get("SeriesDescription", ""), seq))

    # -- what Ingest routes made ---------------------------------------------------------------
    def _ingested(self, route: Route, tags: Mapping[str, Any], instance_id: Optional[str] = None) -> bool:
        """Did `route`'s profile pseudonymize this instance on ingest? Orthanc's simplified tags
        cannot show a private element (all are "Unknown Tag & Data", none in Implicit VR), so the
        mark is read from Orthanc, only for an instance that claims the profile."""
        if route.pseudonymize not in self.pseudonymizers:
            return False
        if instance_id is not None and self.made is not None and self.made.holds(instance_id, route.pseudonymize):
            return True                 # this process's gate made it
        if instance_id is not None and "SOPInstanceUID" not in tags:
            tags = {**tags, **self.tags.instance_tags(instance_id)}      # not read for the routes' matching
        if not claims_ingest(route, tags):
            return False
        mark = self._mark_of(instance_id or orthanc_instance_id(tags))
        return pseudonymized_on_ingest(route, {**tags, MAC_KEY: mark}, self.pseudonymizers)

    def _mark_of(self, instance_id: str) -> bytes:
        """The raw value of the instance's Courier mark element, b"" if it has none."""
        mark = self._marks.get(instance_id)
        if mark is None:
            try:
                mark = self.rest.get_bytes(f"/instances/{instance_id}/content/{MAC_KEY.replace(',', '-')}")
            except OrthancHttpError as exc:
                if exc.status != 404:
                    raise               # Orthanc unavailable: read again later
                return b""              # no mark (or no such instance): not Courier's
            self._marks[instance_id] = mark         # a mark fits its instance's identifiers: it stays true
            while len(self._marks) > MARK_CACHE:
                self._marks.popitem(last=False)
        return mark
