"""The audit trail: who did what, when, to which route, destination, resource or task.

Audit lines are written in the same transaction as the change they describe (`write`), so the
trail never claims what did not commit, and never misses what did.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Iterable, Optional

from courier.store.database import SQLiteDatabase
from courier.store.records import AuditEvent


def write(db: sqlite3.Connection, now: float, events: Iterable[AuditEvent]) -> None:
    """Insert audit lines inside the caller's transaction."""
    db.executemany(
        "INSERT INTO audit (at, actor, action, route, destination, resource_id, task_id, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(now, e.actor, e.action, e.route, e.destination, e.resource_id, e.task_id,
          None if e.detail is None else json.dumps(e.detail)) for e in events])


class AuditLog:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database = database

    def record(self, *events: AuditEvent) -> None:
        with self.database.transaction() as db:
            write(db, self.database.clock(), events)

    def entries(self, action: Optional[str] = None, actor: Optional[str] = None, route: Optional[str] = None,
                task_id: Optional[int] = None, since: Optional[float] = None,
                limit: int = 100, offset: int = 0, node: Optional[str] = None,
                until: Optional[float] = None) -> tuple[int, list[dict]]:
        """(total, newest first) of the entries matching every filter given."""
        where, args = [], []
        for column, op, value in (("action", "=", action), ("actor", "=", actor), ("route", "=", route),
                                  ("task_id", "=", task_id), ("at", ">=", since), ("at", "<", until),
                                  ("destination", "=", node)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        db = self.database.read()
        total = db.execute(f"SELECT COUNT(*) FROM audit{clause}", args).fetchone()[0]
        rows = db.execute(f"SELECT * FROM audit{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                          (*args, limit, offset)).fetchall()
        entries = []
        for r in rows:
            entry = dict(r)
            entry["detail"] = json.loads(entry["detail"]) if entry["detail"] else None
            entries.append(entry)
        return total, entries
