"""The back-ends: where the store's SQL runs. SQLite (WAL) for one router; PostgreSQL
(courier.store.postgres) for several routers on one database.

Every table module goes through these and nothing else, so that the same SQL runs on both:

    read()          a connection for SELECTs outside a transaction
    transaction()   a write transaction: everything inside commits together or not at all
    clock()         the time, from the database's clock where there is one (PostgreSQL's now):
                    heartbeats and completion timers never depend on a router's clock
    lock(db, key)   inside a transaction, serialize it with every other holding the same key
                    (other routers included); a no-op on SQLite, whose writers are serialized
    hold(key)       a lock for the life of the process (a router's name), dropped when it dies
    holds(key)      is that lock still ours (PostgreSQL drops it with its connection)
    SKIP_LOCKED     appended to the SELECT of a claim: rows another transaction holds are skipped
    FOR_UPDATE      appended to a SELECT whose row the transaction is about to change (the cursor)
    indexed_by(i)   after a table's name: use index `i` (SQLite's planner, which has no statistics,
                    prefers the claim's tasks_due and scans; PostgreSQL's plans by statistics: "")

The SQL is written once, with `?` placeholders and portable statements (INSERT ... ON CONFLICT,
RETURNING id); rows are read by position or by column name on both back-ends.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator, Protocol

import sqlite_utils

from courier.store.schema import migrations


class Database(Protocol):
    """What a back-end offers the table modules (see above)."""
    SKIP_LOCKED: str
    FOR_UPDATE: str
    name: str

    def clock(self) -> float: ...

    def read(self) -> Any: ...

    def transaction(self) -> ContextManager[Any]: ...

    def lock(self, db: Any, key: str) -> None: ...

    def indexed_by(self, index: str) -> str: ...

    def hold(self, key: str) -> bool:
        """Take a lock for as long as this process lives (released when it exits, even by kill -9);
        False if another process holds it."""
        ...

    def holds(self, key: str) -> bool: ...

    def close(self) -> None: ...


class SQLiteDatabase:
    SKIP_LOCKED = ""
    FOR_UPDATE = ""
    name = "sqlite"

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path, self.clock = path, clock
        self._local = threading.local()
        # Writers of this process queue here: SQLite's own busy handler sleeps with a growing
        # back-off (up to 100 ms) when threads collide on BEGIN IMMEDIATE, which profiling showed
        # to be the bottleneck. The busy timeout still covers other processes.
        self._write_lock = threading.Lock()
        self._held: list[int] = []
        self._held_keys: set[str] = set()
        schema = sqlite_utils.Database(path)
        try:
            migrations.apply(schema)
        finally:
            schema.close()

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def read(self) -> sqlite3.Connection:
        """This thread's connection, for SELECTs outside a transaction."""
        return self._connection()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def lock(self, db: sqlite3.Connection, key: str) -> None:
        """SQLite runs one write transaction at a time: nothing more to serialize."""

    def indexed_by(self, index: str) -> str:
        return f" INDEXED BY {index}"

    def hold(self, key: str) -> bool:
        """An flock on a file beside the database, one per key; the kernel drops it with the process."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        fd = os.open(f"{self.path}-held-{digest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held.append(fd)
        self._held_keys.add(key)
        return True

    def holds(self, key: str) -> bool:
        """An flock stays with its process: ours for as long as we took it."""
        return key in self._held_keys

    def close(self) -> None:
        for fd in self._held:
            os.close(fd)
        self._held.clear()
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
