"""Instances that could not be pseudonymized (or were refused): the reason, the task, and for
ingest the file that keeps the original. Nothing is lost: an admin releases or deletes each."""
from __future__ import annotations

from typing import Optional

from courier.store.audit import write as write_audit
from courier.store.database import SQLiteDatabase
from courier.store.records import AuditEvent, NewTask
from courier.store.tasks import insert_tasks


class Quarantine:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database, self.clock = database, database.clock

    def add(self, reason: str, disposition: str, profile: Optional[str] = None, route: Optional[str] = None,
            task_id: Optional[int] = None, instance_id: Optional[str] = None,
            sop_instance_uid: Optional[str] = None, file: Optional[str] = None) -> int:
        now = self.clock()
        with self.database.transaction() as db:
            entry_id = db.execute("INSERT INTO quarantine (at, profile, route, task_id, instance_id, sop_instance_uid,"
                                  " reason, disposition, file) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                  (now, profile, route, task_id, instance_id, sop_instance_uid, reason,
                                   disposition, file)).fetchone()[0]
            kept = disposition in ("quarantine", "modify-error")       # the original is kept, to release
            write_audit(db, now, [AuditEvent("instance-quarantined" if kept else "instance-refused", route=route,
                                             resource_id=instance_id, task_id=task_id,
                                             detail={"reason": reason, "quarantine_id": entry_id})])
        return entry_id

    def get(self, entry_id: int) -> Optional[dict]:
        row = self.database.read().execute("SELECT * FROM quarantine WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else dict(row)

    def release(self, entry_id: int, actor: str, task: Optional[NewTask]) -> list[int]:
        """Forget the entry; with `task`, queue it (same transaction) to deliver the instance."""
        now = self.clock()
        with self.database.transaction() as db:
            db.execute("DELETE FROM quarantine WHERE id = ?", (entry_id,))
            write_audit(db, now, [AuditEvent("quarantine-released", actor=actor, detail={"quarantine_id": entry_id})])
            return insert_tasks(db, now, [task]) if task else []

    def delete(self, entry_id: int, actor: str) -> Optional[dict]:
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT * FROM quarantine WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM quarantine WHERE id = ?", (entry_id,))
            write_audit(db, now, [AuditEvent("quarantine-deleted", actor=actor, route=row["route"], task_id=row["task_id"],
                                        resource_id=row["instance_id"], detail={"quarantine_id": entry_id})])
        return dict(row)

    def list(self, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        total = self.database.read().execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        rows = self.database.read().execute("SELECT * FROM quarantine ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
        return total, [dict(r) for r in rows]
