"""Retention (Courier.RetentionDays): what is older is pruned, a batch at a time so that no
transaction holds the database long: finished routed tasks and their manifests (a job's tasks
stay with their job until it is deleted), audit rows, imported files' records once done or
rejected, closed uploads, the traffic log's rows. The counts are audited, in a row that itself stays RetentionDays."""
from __future__ import annotations

from typing import Sequence

from courier.store.audit import write as write_audit
from courier.store.database import Database
from courier.store.records import FINAL_STATES, AuditEvent

BATCH = 5000


class Retention:
    def __init__(self, database: Database) -> None:
        self.database, self.clock = database, database.clock

    def _in_batches(self, select: str, delete_children: str, delete: str, args: tuple) -> int:
        total = 0
        while True:
            with self.database.transaction() as db:
                ids = [r[0] for r in db.execute(f"{select} LIMIT {BATCH}", args).fetchall()]
                if not ids:
                    return total
                marks = ", ".join("?" * len(ids))
                if delete_children:
                    db.execute(delete_children.format(marks), ids)
                db.execute(delete.format(marks), ids)
                total += len(ids)

    def prune(self, days: float, keep_sources: Sequence[str] = ()) -> dict[str, int]:
        """Everything older than `days` that may go; {} when days is 0 (keep everything). The records
        of `keep_sources` (watched folders with After Keep, whose files stay) are kept: a file
        without one would be imported again."""
        if days <= 0:
            return {}
        now = self.clock()
        cutoff = now - days * 86400
        finals = ", ".join("?" * len(FINAL_STATES))
        counts = {
            "tasks": self._in_batches(
                f"SELECT id FROM tasks WHERE job_id IS NULL AND state IN ({finals}) AND finished_at < ?",
                "DELETE FROM task_instances WHERE task_id IN ({})", "DELETE FROM tasks WHERE id IN ({})",
                (*FINAL_STATES, cutoff)),
            "audit": self._in_batches("SELECT id FROM audit WHERE at < ?", "", "DELETE FROM audit WHERE id IN ({})",
                                      (cutoff,)),
            "import_files": self._in_batches(
                "SELECT id FROM import_files WHERE at < ? AND state <> 'storing'"
                + (f" AND source NOT IN ({', '.join('?' * len(keep_sources))})" if keep_sources else "")
                + " AND (source NOT LIKE 'upload-%' OR source IN (SELECT 'upload-' || id FROM uploads WHERE state <> 'OPEN'))"
                + " AND (source LIKE 'upload-%' OR state IN ('done', 'rejected'))",
                "", "DELETE FROM import_files WHERE id IN ({})", (cutoff, *keep_sources)),
            "uploads": self._in_batches("SELECT id FROM uploads WHERE state <> 'OPEN' AND at < ?", "",
                                        "DELETE FROM uploads WHERE id IN ({})", (cutoff,)),
            "traffic": self._in_batches("SELECT id FROM traffic WHERE last_at < ?", "",
                                        "DELETE FROM traffic WHERE id IN ({})", (cutoff,)),
        }
        if any(counts.values()):
            with self.database.transaction() as db:
                write_audit(db, now, [AuditEvent("retention-pruned", detail={"days": days, **counts})])
        return counts
