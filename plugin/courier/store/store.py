"""The store: everything Courier must not forget, in one database (SQLite by default, or one
PostgreSQL that several routers share).

One object per table family, all on one back-end (courier.store.database):

    tasks       tasks, their manifests, the change cursor, per-destination counters
    jobs        transfer jobs, their batch files and per-patient pseudonyms
    audit       the audit trail
    crosswalk   original -> pseudonym per patient and UID, lookup tables
    quarantine  what could not be pseudonymized, with the reason
    nodes       the last echo of each node
    completions arrivals of series and studies, and which route completed them up to where
    routers     the routers sharing the database, with their heartbeats
    subscriptions  scheduled queries of a source, and what each transferred per study
    imports     files of watched folders and uploads, and the instances they became
    stats       the dashboard's hourly time series
    traffic     the DICOM traffic log: C-STOREs received or refused, C-FINDs served, per caller
    retention   what is older than RetentionDays, pruned
    config_versions  the runtime configuration, every change a numbered version
"""
from __future__ import annotations

import time
from typing import Callable, Union

from courier.store.audit import AuditLog
from courier.store.completion import Completions
from courier.store.config_versions import ConfigVersions
from courier.store.crosswalk import Crosswalk
from courier.store.database import Database, SQLiteDatabase
from courier.store.imports import Imports
from courier.store.jobs import Jobs
from courier.store.nodes import NodeStatus
from courier.store.quarantine import Quarantine
from courier.store.retention import Retention
from courier.store.routers import Routers
from courier.store.stats import Stats
from courier.store.subscriptions import Subscriptions
from courier.store.tasks import Tasks
from courier.store.traffic import Traffic


class Store:
    def __init__(self, database: Union[str, Database], clock: Callable[[], float] = time.time) -> None:
        """`database`: a SQLite file's path, or a back-end (SQLiteDatabase, PostgresDatabase)."""
        self.database = SQLiteDatabase(database, clock) if isinstance(database, str) else database
        self.clock = self.database.clock
        self.tasks = Tasks(self.database)
        self.jobs = Jobs(self.database)
        self.audit = AuditLog(self.database)
        self.crosswalk = Crosswalk(self.database)
        self.quarantine = Quarantine(self.database)
        self.nodes = NodeStatus(self.database)
        self.completions = Completions(self.database)
        self.routers = Routers(self.database)
        self.subscriptions = Subscriptions(self.database)
        self.imports = Imports(self.database)
        self.stats = Stats(self.database)
        self.traffic = Traffic(self.database)
        self.retention = Retention(self.database)
        self.config_versions = ConfigVersions(self.database)
