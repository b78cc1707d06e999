"""Recording arrivals (one row per instance, one per series and study with the last arrival time
and the count so far), inside the change-cursor transaction of courier.store.tasks.enqueue."""
from __future__ import annotations

import sqlite3
from typing import Sequence

from courier.store.records import Arrival


def record_arrivals(db: sqlite3.Connection, now: float, arrivals: Sequence[Arrival]) -> None:
    """Inside the caller's (cursor) transaction."""
    for a in arrivals:
        db.execute("INSERT INTO arrivals (instance_id, series_id, study_id, sop_instance_uid, size, seq, at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(instance_id) DO UPDATE SET seq = excluded.seq,"
                   " at = excluded.at", (a.instance_id, a.series_id, a.study_id, a.sop_instance_uid, a.size, a.seq, now))
        for level, resource, modality, description in (("Series", a.series_id, a.modality, a.series_description),
                                                       ("Study", a.study_id, None, None)):
            db.execute("INSERT INTO arrival_resources (level, resource_id, study_id, modality, description, first_at,"
                       " last_at, instances, last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(level, resource_id)"
                       " DO UPDATE SET last_at = excluded.last_at, instances = arrival_resources.instances + 1,"
                       " last_seq = excluded.last_seq",
                       (level, resource, a.study_id, modality, description, now, now, a.seq))
