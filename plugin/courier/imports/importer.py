"""Storing files into Orthanc for an import, each recorded (courier.store.imports), and routing a
unit of them once it is complete: one Study task per study and destination, the unit's files
marked routed in the same transaction."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

from courier.config.imports import ImportFolder
from courier.config.routes import Route
from courier.imports.detect import detect
from courier.orthanc_rest import OrthancHttpError, OrthancRest
from courier.store.records import NewTask
from courier.store.store import Store

log = logging.getLogger("courier.imports")


@dataclass(frozen=True)
class Target:
    """Where the studies of an import go: a route's destinations (with its profile and priority),
    or destinations named by the import."""
    route: str
    destinations: tuple[str, ...]
    profile: Optional[str] = None
    priority: int = 0


def target_of(folder: ImportFolder, routes: Sequence[Route]) -> Target:
    if folder.route:
        route = next(r for r in routes if r.name == folder.route)
        return Target(route.name, route.destinations, route.pseudonymize if route.pseudonymize_on == "Send" else None,
                      route.priority)
    return Target(f"import:{folder.id}", folder.destinations, folder.pseudonymize)


@dataclass(frozen=True)
class Stored:
    """What became of one file."""
    outcome: str                          # imported | duplicate | not DICOM | unreadable
    reason: str = ""
    instance_id: Optional[str] = None
    study_id: Optional[str] = None
    series_id: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("imported", "duplicate")


class Importer:
    def __init__(self, store: Store, rest: OrthancRest) -> None:
        self.store, self.rest = store, rest

    def store_file(self, source: str, path: str, unit: str, data: bytes, mtime: float = 0.0) -> Stored:
        """Detect, record, store into Orthanc. DeliveryError (Orthanc unavailable) leaves the file
        `storing`: it is stored again at the next pass."""
        found = detect(data)
        if not found.dicom:
            outcome = "not DICOM" if found.reason.startswith("not DICOM") else "unreadable"
            self.store.imports.rejected(source, path, unit, len(data), mtime, outcome, found.reason)
            return Stored(outcome, found.reason)
        self.store.imports.storing(source, path, unit, len(data), mtime, found.instance_id, found.study_id,
                                   found.series_id)
        try:
            answer = self.rest.post_bytes("/instances", data) or {}
        except OrthancHttpError as exc:
            if 400 <= exc.status < 500:
                reason = f"unreadable: Orthanc refused it ({exc})"[:500]
                self.store.imports.rejected(source, path, unit, len(data), mtime, "unreadable", reason)
                return Stored("unreadable", reason)
            raise
        outcome = "duplicate" if answer.get("Status") == "AlreadyStored" else "imported"
        if answer.get("ID") and answer["ID"] != found.instance_id:      # Orthanc's ID is the one that counts
            self.store.imports.storing(source, path, unit, len(data), mtime, answer["ID"],
                                       answer.get("ParentStudy", found.study_id), answer.get("ParentSeries", ""))
        self.store.imports.stored(source, path, outcome)
        return Stored(outcome, "", answer.get("ID", found.instance_id), answer.get("ParentStudy", found.study_id),
                      answer.get("ParentSeries"))

    def route(self, source: str, unit: Optional[str], targets: Sequence[Target], actor: str = "courier") -> int:
        """Tasks for the stored, unrouted studies of the unit (or the whole upload), for each target,
        made in one transaction with the files marked routed; returns the files routed (0: nothing to do)."""
        def tasks_for(studies: list[str]) -> list[NewTask]:
            return [NewTask(target.route, destination, "Study", study_id, target.priority, False, target.profile)
                    for study_id in studies for target in targets for destination in target.destinations]
        routed = self.store.imports.route(source, unit, tasks_for, actor, {"routes": [t.route for t in targets]})
        if routed:
            log.info("import %s: %d file(s) routed through %s", source, routed, ", ".join(t.route for t in targets))
        return routed
