"""Pure: when is a pending series or study complete for a route?

    forced      an operator asked for it (POST /courier/completion/{id}/force)
    complete    StableStudy with CompleteWhen: a series of every description and modality listed is there
    quiet       no instance for the route's StableAfterSeconds (default: Orthanc's StableAge)
    force-after ForceAfterSeconds since the first instance not yet routed, quiet or not

Times come from the store's clock and are stored, so a restart resumes the timers where they were.
"""
from __future__ import annotations

import re
from typing import Optional

from courier.config.routes import CompleteWhen, Route
from courier.store.records import Pending


def _wildcard(pattern: str, value: str) -> bool:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def holds(when: CompleteWhen, pending: Pending) -> bool:
    """The pending study holds a series of each description and each modality listed."""
    if not when:
        return False
    descriptions_there = all(any(_wildcard(wanted, found) for found in pending.series_descriptions)
                             for wanted in when.series_descriptions)
    modalities_there = all(wanted.upper() in {m.upper() for m in pending.modalities} for wanted in when.modalities)
    return descriptions_there and modalities_there


def why_complete(route: Route, pending: Pending, now: float) -> Optional[str]:
    """The reason `pending` is complete for `route` now, or None if it must wait."""
    if pending.forced_at is not None and pending.forced_at >= pending.first_at:
        return "forced"
    if holds(route.complete_when, pending):
        return "complete"
    if now - pending.last_at >= route.stable_after:
        return "quiet"
    if route.force_after is not None and now - pending.first_at >= route.force_after:
        return "force-after"
    return None


def due_at(route: Route, pending: Pending) -> float:
    """When `pending` will be complete for `route` if nothing else arrives (store clock)."""
    due = pending.last_at + route.stable_after
    if route.force_after is not None:
        due = min(due, pending.first_at + route.force_after)
    return due
