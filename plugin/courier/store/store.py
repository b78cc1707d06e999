"""The store: everything Courier must not forget, in one database (SQLite by default).

One object per table family, all on one back-end (courier.store.database):

    tasks       tasks, their manifests, the change cursor, per-destination counters
    jobs        transfer jobs, their batch files and per-patient pseudonyms
    audit       the audit trail
    crosswalk   original -> pseudonym per patient and UID, lookup tables
    quarantine  what could not be pseudonymized, with the reason
    nodes       the last echo of each node
    completions arrivals of series and studies, and which route completed them up to where
"""
from __future__ import annotations

import time
from typing import Callable

from courier.store.audit import AuditLog
from courier.store.completion import Completions
from courier.store.crosswalk import Crosswalk
from courier.store.database import SQLiteDatabase
from courier.store.jobs import Jobs
from courier.store.nodes import NodeStatus
from courier.store.quarantine import Quarantine
from courier.store.tasks import Tasks


class Store:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.database = SQLiteDatabase(path, clock)
        self.clock = clock
        self.tasks = Tasks(self.database)
        self.jobs = Jobs(self.database)
        self.audit = AuditLog(self.database)
        self.crosswalk = Crosswalk(self.database)
        self.quarantine = Quarantine(self.database)
        self.nodes = NodeStatus(self.database)
        self.completions = Completions(self.database)
