"""Imported files (watched folders, uploads), one row each: what became of it (imported,
duplicate, not DICOM, unreadable, with the reason) and where it stands (storing, stored,
rejected, routed, done); uploads; and the instances imports hold, which the routes leave alone.

A file is recorded as `storing`, with the Orthanc ID its identifiers give, *before* it is sent to
Orthanc: the change follower therefore never routes an imported instance as if it had been
received, and a router killed mid-import stores the file again at its next start (Orthanc keeps
one copy). The tasks of a unit (a folder, an upload) are made in the transaction that marks its
files `routed`, so a unit is routed once.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from courier.store.audit import write as write_audit
from courier.store.database import Database
from courier.store.records import AuditEvent, NewTask
from courier.store.tasks import insert_tasks

STORING, STORED, REJECTED, ROUTED, DONE = "storing", "stored", "rejected", "routed", "done"


class Imports:
    def __init__(self, database: Database) -> None:
        self.database, self.clock = database, database.clock

    def seen(self, source: str) -> dict[str, dict]:
        """path -> its row, for one watched folder or upload."""
        return {r["path"]: dict(r) for r in self.database.read().execute(
            "SELECT * FROM import_files WHERE source = ?", (source,)).fetchall()}

    def storing(self, source: str, path: str, unit: str, size: int, mtime: float, instance_id: str, study_id: str,
                series_id: str) -> None:
        now = self.clock()
        with self.database.transaction() as db:
            db.execute("INSERT INTO import_files (source, path, unit, size, mtime, state, instance_id, study_id, series_id,"
                       " at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, path) DO UPDATE SET"
                       " unit = excluded.unit, size = excluded.size, mtime = excluded.mtime, state = excluded.state,"
                       " outcome = NULL, reason = NULL, instance_id = excluded.instance_id, study_id = excluded.study_id,"
                       " series_id = excluded.series_id, at = excluded.at",
                       (source, path, unit, size, mtime, STORING, instance_id, study_id, series_id, now))

    def stored(self, source: str, path: str, outcome: str) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE import_files SET state = ?, outcome = CASE WHEN outcome = 'imported' THEN outcome ELSE ? END,"
                       " at = ? WHERE source = ? AND path = ?", (STORED, outcome, self.clock(), source, path))

    def rejected(self, source: str, path: str, unit: str, size: int, mtime: float, outcome: str, reason: str) -> None:
        now = self.clock()
        with self.database.transaction() as db:
            db.execute("INSERT INTO import_files (source, path, unit, size, mtime, state, outcome, reason, at)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, path) DO UPDATE SET unit = excluded.unit,"
                       " size = excluded.size, mtime = excluded.mtime, state = excluded.state, outcome = excluded.outcome,"
                       " reason = excluded.reason, instance_id = NULL, study_id = NULL, series_id = NULL, at = excluded.at",
                       (source, path, unit, size, mtime, REJECTED, outcome, reason[:500], now))

    def done(self, source: str, paths: Sequence[str]) -> None:
        with self.database.transaction() as db:
            db.executemany("UPDATE import_files SET state = ?, at = ? WHERE source = ? AND path = ?",
                           [(DONE, self.clock(), source, p) for p in paths])

    def studies_to_route(self, source: str, unit: Optional[str] = None) -> list[str]:
        """Orthanc IDs of the studies whose files of the unit (or the whole upload) are stored, not routed."""
        clause, args = ("AND unit = ?", (unit,)) if unit is not None else ("", ())
        return [r[0] for r in self.database.read().execute(
            f"SELECT DISTINCT study_id FROM import_files WHERE source = ? {clause} AND state = ? ORDER BY study_id",
            (source, *args, STORED)).fetchall()]

    def route(self, source: str, unit: Optional[str], make_tasks: Callable[[list[str]], Sequence[NewTask]], actor: str,
              detail: dict) -> int:
        """The unit's stored files marked routed and the tasks `make_tasks` makes for their studies, in
        one transaction (a file stored meanwhile is routed by the next pass, never marked without a
        task); the audit says how many files ended how (never a patient's name, nor a folder's).
        Returns the files routed."""
        now = self.clock()
        clause, args = ("AND unit = ?", (unit,)) if unit is not None else ("", ())
        with self.database.transaction() as db:
            rows = db.execute(f"UPDATE import_files SET state = ?, at = ? WHERE source = ? {clause} AND state = ?"
                              f" RETURNING outcome, study_id", (ROUTED, now, source, *args, STORED)).fetchall()
            if not rows:
                return 0                       # another pass routed it already
            tasks = make_tasks(sorted({r[1] for r in rows if r[1]}))
            insert_tasks(db, now, tasks)
            counts: dict[str, int] = {}
            for row in rows:
                counts[row[0] or "imported"] = counts.get(row[0] or "imported", 0) + 1
            write_audit(db, now, [AuditEvent("import-routed", actor=actor, route=source,
                                             detail={**detail, "files": counts, "tasks": len(tasks)})])
        return len(rows)

    def held(self, instance_ids: Sequence[str]) -> set[str]:
        """Those of the instances that an import stored: the routes leave them to it."""
        found: set[str] = set()
        db = self.database.read()
        ids = list(instance_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found |= {r[0] for r in db.execute(
                f"SELECT instance_id FROM import_files WHERE instance_id IN ({', '.join('?' * len(chunk))})", chunk)}
        return found

    def summary(self, source: str) -> dict:
        db = self.database.read()
        outcomes = dict(db.execute("SELECT COALESCE(outcome, 'storing'), COUNT(*) FROM import_files WHERE source = ?"
                                   " GROUP BY COALESCE(outcome, 'storing')", (source,)).fetchall())
        states = dict(db.execute("SELECT state, COUNT(*) FROM import_files WHERE source = ? GROUP BY state",
                                 (source,)).fetchall())
        last = db.execute("SELECT MAX(at) FROM import_files WHERE source = ?", (source,)).fetchone()[0]
        return {"Files": sum(outcomes.values()), "Outcomes": outcomes, "States": states, "LastAt": last}

    def files(self, source: str, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        db = self.database.read()
        total = db.execute("SELECT COUNT(*) FROM import_files WHERE source = ?", (source,)).fetchone()[0]
        rows = db.execute("SELECT path, unit, size, state, outcome, reason, instance_id, study_id, series_id, at"
                          " FROM import_files WHERE source = ? ORDER BY id LIMIT ? OFFSET ?",
                          (source, limit, offset)).fetchall()
        return total, [{"Path": r[0], "Unit": r[1], "Size": r[2], "State": r[3], "Outcome": r[4], "Reason": r[5],
                        "Instance": r[6], "Study": r[7], "Series": r[8], "At": r[9]} for r in rows]

    # -- uploads --------------------------------------------------------------------------
    def new_upload(self, actor: str) -> int:
        now = self.clock()
        with self.database.transaction() as db:
            upload_id = db.execute("INSERT INTO uploads (created_at, created_by, state, at) VALUES (?, ?, 'OPEN', ?)"
                                   " RETURNING id", (now, actor, now)).fetchone()[0]
            write_audit(db, now, [AuditEvent("upload-started", actor=actor, detail={"upload": upload_id})])
        return upload_id

    def uploads(self, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        """Uploads, newest first, each with its files' count (an OPEN one still holds its instances)."""
        db = self.database.read()
        total = db.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]
        rows = db.execute("SELECT u.*, (SELECT COUNT(*) FROM import_files f WHERE f.source = 'upload-' || u.id) AS files"
                          " FROM uploads u ORDER BY u.id DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
        return total, [dict(r) for r in rows]

    def upload(self, upload_id: int) -> Optional[dict]:
        row = self.database.read().execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return None if row is None else dict(row)

    def close_upload(self, upload_id: int, state: str, action: str, actor: str) -> bool:
        """OPEN -> ROUTED, SENT or DISCARDED, once; False if it was closed already."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("UPDATE uploads SET state = ?, action = ?, at = ? WHERE id = ? AND state = 'OPEN'"
                             " RETURNING id", (state, action, now, upload_id)).fetchone()
        return row is not None
