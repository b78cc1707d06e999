"""Completing series and studies for StableSeries and StableStudy routes, from Courier's own record
of arrivals (courier.store.completion), in the change follower's thread.

At each pass, for each such route: every series or study with instances the route has not yet
completed is checked (routing.stability); one that is complete is evaluated against the routes
and gets its tasks, whose manifest is exactly the instances not yet routed: the whole resource the
first time, the late instances only when it grew after it was routed. Tasks and the new mark are
written together, once per route, whatever stops the router in between.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

from courier.config.routes import Route
from courier.orthanc_rest import OrthancHttpError
from courier.routing.rules import Ingested, ScriptRunner, tasks_for
from courier.routing.stability import due_at, why_complete
from courier.routing.tags import ResourceTags
from courier.store.store import Store

log = logging.getLogger("courier.completion")

PRUNE_EVERY = 3600.0        # seconds between two prunings of routed arrivals
KEEP_ROUTED = 86400.0       # routed arrivals are kept this long (for GET /courier/completion, the audit)


class Completer:
    def __init__(self, store: Store, routes: Sequence[Route], tags: ResourceTags, run_script: Optional[ScriptRunner],
                 ingested: Ingested, clock: Optional[Callable[[], float]] = None) -> None:
        self.store, self.routes, self.tags, self.run_script, self.ingested = store, tuple(routes), tags, run_script, ingested
        self.stable = tuple(r for r in self.routes if r.trigger != "Instance")
        self.clock = clock or store.clock
        self._pruned_at = 0.0

    def run(self) -> tuple[int, Optional[float]]:
        """Complete what is due. Returns (tasks created, seconds until the next completion is due)."""
        if not self.stable:
            return 0, None
        now = self.clock()
        created, next_due = 0, None
        tags_cache: dict[str, Optional[dict]] = {}
        for route in self.stable:
            for pending in self.store.completions.pending(route.name, route.level):
                reason = why_complete(route, pending, now)
                if reason is None:
                    due = due_at(route, pending)
                    next_due = due if next_due is None else min(next_due, due)
                    continue
                if pending.resource_id not in tags_cache:
                    try:
                        tags_cache[pending.resource_id] = self.tags.of(route.level, pending.resource_id)
                    except OrthancHttpError as exc:
                        if exc.status != 404:
                            raise                # Orthanc unavailable: try again at the next pass
                        tags_cache[pending.resource_id] = None          # deleted meanwhile: nothing to send
                tags = tags_cache[pending.resource_id]
                tasks, audit = ([], []) if tags is None else tasks_for(
                    self.routes, route.trigger, route.level, pending.resource_id, tags, self.run_script, self.ingested,
                    only=route)
                ids = self.store.completions.complete(route.name, pending, tasks, reason if tags is not None else "gone",
                                                      audit)
                created += len(ids or ())       # None: another pass (or router) completed it meanwhile
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            self.store.completions.prune([r.name for r in self.stable if r.level == "Series"],
                                         [r.name for r in self.stable if r.level == "Study"], now - KEEP_ROUTED)
        return created, None if next_due is None else max(0.0, next_due - now)
