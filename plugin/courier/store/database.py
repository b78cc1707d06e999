"""The back-end: where the store's SQL runs. SQLite (WAL) for one router.

One connection per thread. Writers of this process queue on a lock before `BEGIN IMMEDIATE`:
SQLite's own busy handler sleeps with a growing back-off (up to 100 ms) when threads collide,
which profiling showed to be the bottleneck; the busy timeout still covers other processes.
Every table module (tasks, jobs, audit, crosswalk...) goes through `read()` and `transaction()`
and nothing else, so that another back-end can sit beside this one.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import sqlite_utils

from courier.store.schema import migrations


class SQLiteDatabase:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = path, clock
        self._local = threading.local()
        self._write_lock = threading.Lock()
        schema = sqlite_utils.Database(path)
        try:
            migrations.apply(schema)
        finally:
            schema.close()

    def read(self) -> sqlite3.Connection:
        """This thread's connection, for SELECTs outside a transaction."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything inside commits together or not at all."""
        db = self.read()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
