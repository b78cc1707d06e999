"""Arrivals and completions: Courier's own record of series and studies as they arrive, from which
StableSeries and StableStudy routes fire, so that a restart resumes the timers where they were
(Orthanc's own stable events live in its process memory and are lost on any stop).

Arrivals are written in the same transaction as the change cursor (courier.store.arrivals); a
completion writes its tasks, their manifests (the instances that arrived since the route last
completed the resource, no others) and the new mark in one transaction, after checking that no
one else completed it meanwhile: each completion fires once per route.
"""
from __future__ import annotations

from typing import Optional, Sequence

from courier.store.audit import write as write_audit
from courier.store.database import SQLiteDatabase
from courier.store.records import AuditEvent, NewTask, Pending
from courier.store.tasks import insert_tasks


class Completions:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database, self.clock = database, database.clock

    def pending(self, route: str, level: str) -> list[Pending]:
        """Resources of `level` with instances newer than `route` last completed."""
        db = self.database.read()
        rows = db.execute(
            "SELECT r.resource_id, r.study_id, r.instances, r.last_at, r.last_seq, r.forced_at, r.modality, r.description,"
            " COALESCE(c.routed_seq, 0) AS routed_seq FROM arrival_resources r"
            " LEFT JOIN completions c ON c.route = ? AND c.resource_id = r.resource_id"
            " WHERE r.level = ? AND r.last_seq > COALESCE(c.routed_seq, 0)", (route, level)).fetchall()
        found = []
        column = "series_id" if level == "Series" else "study_id"
        for r in rows:
            new, first = db.execute(f"SELECT COUNT(*), MIN(at) FROM arrivals WHERE {column} = ? AND seq > ?",
                                    (r["resource_id"], r["routed_seq"])).fetchone()
            if level == "Study":
                series = db.execute("SELECT modality, description FROM arrival_resources WHERE level = 'Series'"
                                    " AND study_id = ?", (r["resource_id"],)).fetchall()
            else:
                series = [(r["modality"], r["description"])]
            found.append(Pending(level, r["resource_id"], r["study_id"], r["instances"], new, first or r["last_at"],
                                 r["last_at"], r["last_seq"], r["routed_seq"], r["forced_at"],
                                 tuple(s[0] or "" for s in series), tuple(s[1] or "" for s in series)))
        return found

    def complete(self, route: str, pending: Pending, tasks: Sequence[NewTask], reason: str,
                 audit: Sequence[AuditEvent] = ()) -> Optional[list[int]]:
        """Mark `pending` completed for `route` up to its last arrival and queue `tasks` (their
        manifest: the instances that arrived since the last completion). None if someone else
        completed it meanwhile (nothing is written then)."""
        now = self.clock()
        column = "series_id" if pending.level == "Series" else "study_id"
        with self.database.transaction() as db:
            self.database.lock(db, f"completion:{route}:{pending.resource_id}")      # once, across routers
            done = db.execute("SELECT routed_seq FROM completions WHERE route = ? AND resource_id = ?",
                              (route, pending.resource_id)).fetchone()
            if (done[0] if done else 0) != pending.routed_seq:
                return None
            items = db.execute(f"SELECT instance_id, sop_instance_uid, size FROM arrivals WHERE {column} = ?"
                               f" AND seq > ? AND seq <= ? ORDER BY seq", (pending.resource_id, pending.routed_seq,
                                                                          pending.last_seq)).fetchall()
            ids = insert_tasks(db, now, tasks)
            for task_id in ids:
                db.executemany("INSERT INTO task_instances (task_id, instance_id, sop_instance_uid, size)"
                               " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", [(task_id, *item) for item in items])
                db.execute("UPDATE tasks SET expected = ? WHERE id = ?", (len(items), task_id))
            db.execute("INSERT INTO completions (route, resource_id, level, routed_seq, completed_at) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT(route, resource_id) DO UPDATE SET routed_seq = excluded.routed_seq,"
                       " completed_at = excluded.completed_at, times = completions.times + 1",
                       (route, pending.resource_id, pending.level, pending.last_seq, now))
            write_audit(db, now, [AuditEvent("resource-completed", route=route, resource_id=pending.resource_id,
                                             detail={"level": pending.level, "instances": len(items), "why": reason,
                                                     "again": pending.routed_seq > 0, "tasks": ids}), *audit])
        return ids

    def force(self, resource_id: str, actor: str) -> Optional[str]:
        """Complete a pending series or study now, for every route; returns its level or None."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT level FROM arrival_resources WHERE resource_id = ?", (resource_id,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE arrival_resources SET forced_at = ? WHERE resource_id = ?", (now, resource_id))
            write_audit(db, now, [AuditEvent("completion-forced", actor=actor, resource_id=resource_id,
                                             detail={"level": row[0]})])
        return row[0]

    def prune(self, series_routes: Sequence[str], study_routes: Sequence[str], older_than: float) -> int:
        """Forget the per-instance rows that every StableSeries and StableStudy route has routed and that
        arrived before `older_than` (store clock); a late instance still goes alone, as its own row is
        newer. The per-series and per-study rows (and the completion marks) are kept."""
        clauses, args = [], []
        for routes, column in ((series_routes, "series_id"), (study_routes, "study_id")):
            for route in routes:
                clauses.append(f" AND seq <= COALESCE((SELECT routed_seq FROM completions WHERE route = ?"
                               f" AND resource_id = arrivals.{column}), 0)")
                args.append(route)
        with self.database.transaction() as db:
            return db.execute(f"DELETE FROM arrivals WHERE at < ?{''.join(clauses)}", (older_than, *args)).rowcount
