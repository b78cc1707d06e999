"""Every SQL statement of Courier: tasks, their manifests, the audit trail, the change cursor.

SQLite (WAL) by default. Writes that must be atomic run in `BEGIN IMMEDIATE` transactions; a
claim is one UPDATE ... WHERE id IN (SELECT ...) so that two workers (or, later, two routers on
one PostgreSQL with FOR UPDATE SKIP LOCKED) never take the same task.

Schema changes are sqlite-utils migrations (each in a transaction, recorded in
`_sqlite_migrations`); never edit a step that has shipped, add one.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping, Optional, Sequence

import sqlite_utils
from sqlite_utils import Migrations

from courier.store.records import (OUTCOME_ACTIONS, Attempt, AuditEvent, JobTarget, ManifestItem, NewTask)

from courier.store.records import CANCELED, FAILURE, FINAL_STATES, PENDING, RUNNING, STATES, SUCCESS, WARNING

migrations = Migrations("courier")

SCHEMA_1 = """
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        route TEXT NOT NULL,
        destination TEXT NOT NULL,
        level TEXT NOT NULL,                 -- Instance | Series | Study
        resource_id TEXT NOT NULL,           -- Orthanc ID
        state TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        heartbeat_at REAL,
        owner TEXT,
        last_error TEXT,
        delete_after INTEGER NOT NULL DEFAULT 0,
        expected INTEGER,                    -- instances in the manifest
        delivered INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tasks_due ON tasks (state, priority DESC, next_attempt_at, id);
    CREATE INDEX tasks_resource ON tasks (resource_id);
    CREATE INDEX tasks_destination ON tasks (destination, state);
    CREATE TABLE task_instances (
        task_id INTEGER NOT NULL REFERENCES tasks(id),
        instance_id TEXT NOT NULL,           -- Orthanc ID
        sop_instance_uid TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (task_id, instance_id)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,                 -- 'courier', a calling AE, or a user
        action TEXT NOT NULL,
        route TEXT,
        destination TEXT,
        resource_id TEXT,
        task_id INTEGER,
        detail TEXT
    );
    CREATE INDEX audit_action ON audit (action, at);
    CREATE TABLE cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE destination_stats (
        destination TEXT PRIMARY KEY,
        delivered_instances INTEGER NOT NULL DEFAULT 0,
        failed_instances INTEGER NOT NULL DEFAULT 0,
        delivered_bytes INTEGER NOT NULL DEFAULT 0
    )
"""


@migrations()
def m001_tasks_manifests_audit_cursor(db: sqlite_utils.Database) -> None:
    for statement in filter(str.strip, SCHEMA_1.split(";")):
        db.execute(statement)


TASK_COLUMNS = ("id", "route", "destination", "level", "resource_id", "state", "priority", "attempts",
                "next_attempt_at", "created_at", "updated_at", "finished_at", "heartbeat_at", "owner",
                "last_error", "delete_after", "expected", "delivered", "bytes", "profile", "job_id", "source",
                "study_uid", "series_uid", "study_id", "reviewed")


@migrations()
def m002_pseudonymization(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN profile TEXT")
    db.execute("CREATE TABLE crosswalk_patients (profile TEXT NOT NULL, original TEXT NOT NULL,"
               " pseudonym TEXT NOT NULL, first_seen REAL NOT NULL, PRIMARY KEY (profile, original))")
    db.execute("CREATE TABLE crosswalk_uids (profile TEXT NOT NULL, original TEXT NOT NULL, new TEXT NOT NULL,"
               " PRIMARY KEY (profile, original))")
    db.execute("CREATE TABLE quarantine (id INTEGER PRIMARY KEY, at REAL NOT NULL, profile TEXT, route TEXT,"
               " task_id INTEGER, instance_id TEXT, sop_instance_uid TEXT, reason TEXT NOT NULL,"
               " disposition TEXT NOT NULL, file TEXT)")


@migrations()
def m003_lookup_tables(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE lookup_patients (profile TEXT NOT NULL, original TEXT NOT NULL, pseudonym TEXT NOT NULL,"
               " PRIMARY KEY (profile, original))")


@migrations()
def m004_node_status(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE node_status (node TEXT PRIMARY KEY, at REAL NOT NULL, ok INTEGER NOT NULL, message TEXT)")


@migrations()
def m005_jobs(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, created_at REAL NOT NULL, created_by TEXT NOT NULL,"
               " source TEXT NOT NULL, destination TEXT NOT NULL, profile TEXT, urgent INTEGER NOT NULL DEFAULT 0,"
               " paused INTEGER NOT NULL DEFAULT 0, canceled INTEGER NOT NULL DEFAULT 0)")
    db.execute("ALTER TABLE tasks ADD COLUMN job_id INTEGER REFERENCES jobs(id)")
    db.execute("ALTER TABLE tasks ADD COLUMN source TEXT")
    db.execute("ALTER TABLE tasks ADD COLUMN study_uid TEXT")
    db.execute("CREATE INDEX tasks_job ON tasks (job_id, state)")


@migrations()
def m006_archive_password(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN archive_password TEXT")   # never returned by the API


@migrations()
def m007_batches(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE batches (id INTEGER PRIMARY KEY, created_at REAL NOT NULL, created_by TEXT NOT NULL,"
               " kind TEXT NOT NULL, source TEXT NOT NULL, file_name TEXT, job_id INTEGER REFERENCES jobs(id),"
               " rows TEXT NOT NULL, results TEXT)")
    db.execute("CREATE TABLE job_pseudonyms (job_id INTEGER NOT NULL REFERENCES jobs(id), patient_id TEXT NOT NULL,"
               " pseudonym TEXT NOT NULL, PRIMARY KEY (job_id, patient_id))")


@migrations()
def m008_series_level_jobs(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN series_uid TEXT")
    db.execute("ALTER TABLE tasks ADD COLUMN study_id TEXT")      # Orthanc ID of the study a job task fetches into


@migrations()
def m009_job_trial(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN trial TEXT")         # JSON: clinical trial attributes of the job


@migrations()
def m010_reviewed_release(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN reviewed INTEGER NOT NULL DEFAULT 0")   # burned-in check waived


class Store:
    def __init__(self, path: str, clock=time.time) -> None:
        self.path, self.clock = path, clock
        self._local = threading.local()
        # Writers of this process queue here: SQLite's own busy handler sleeps with a growing
        # back-off (up to 100 ms) when threads collide on BEGIN IMMEDIATE, which profiling showed
        # to be the bottleneck. The busy timeout still covers other processes.
        self._write_lock = threading.Lock()
        schema = sqlite_utils.Database(path)
        try:
            migrations.apply(schema)
        finally:
            schema.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
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
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _audit(self, db: sqlite3.Connection, events: Iterable[AuditEvent]) -> None:
        now = self.clock()
        db.executemany(
            "INSERT INTO audit (at, actor, action, route, destination, resource_id, task_id, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(now, e.actor, e.action, e.route, e.destination, e.resource_id, e.task_id,
              None if e.detail is None else json.dumps(e.detail)) for e in events])

    # -- ingest -----------------------------------------------------------------------------
    def cursor(self, name: str) -> Optional[int]:
        row = self._db().execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def enqueue(self, tasks: Sequence[NewTask], audit: Sequence[AuditEvent] = (),
                cursor: Optional[tuple[str, int]] = None) -> list[int]:
        """Persist new tasks, their audit lines and the change cursor in one transaction."""
        now = self.clock()
        ids = []
        with self._transaction() as db:
            for t in tasks:
                cur = db.execute(
                    "INSERT INTO tasks (route, destination, level, resource_id, state, priority, next_attempt_at,"
                    " created_at, updated_at, delete_after, profile, job_id, source, study_uid, reviewed)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (t.route, t.destination, t.level, t.resource_id, PENDING, t.priority, now, now, now,
                     int(t.delete_after), t.profile, t.job_id, t.source, t.study_uid, int(t.reviewed)))
                ids.append(cur.lastrowid)
            self._audit(db, [AuditEvent("task-created", route=t.route, destination=t.destination,
                                        resource_id=t.resource_id, task_id=i) for t, i in zip(tasks, ids)])
            self._audit(db, audit)
            if cursor is not None:
                db.execute("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT(name)"
                           " DO UPDATE SET value = excluded.value", cursor)
        return ids

    def record(self, *events: AuditEvent) -> None:
        with self._transaction() as db:
            self._audit(db, events)

    # -- workers ----------------------------------------------------------------------------
    def claim(self, owner: str, limit: int, max_workers_per_destination: int = 10**6,
              closed_sources: Sequence[str] = (), source_limits: Mapping[str, int] = {}) -> list[dict]:
        """Atomically take up to `limit` due tasks of one destination: the most urgent one among
        destinations that fewer than `max_workers_per_destination` workers are serving."""
        now = self.clock()
        with self._transaction() as db:
            busy = [r[0] for r in db.execute(
                "SELECT destination FROM tasks WHERE state = ? GROUP BY destination"
                " HAVING COUNT(DISTINCT owner) >= ?", (RUNNING, max_workers_per_destination))]
            exclude = f" AND destination NOT IN ({', '.join('?' * len(busy))})" if busy else ""
            exclude += " AND (job_id IS NULL OR job_id NOT IN (SELECT id FROM jobs WHERE paused = 1))"
            running = dict(db.execute("SELECT source, COUNT(*) FROM tasks WHERE state = ? AND source IS NOT NULL"
                                      " GROUP BY source", (RUNNING,)).fetchall())
            closed_sources = list(closed_sources) + [s for s, n in running.items() if n >= source_limits.get(s, 10**6)]
            held = f" AND (source IS NULL OR source NOT IN ({', '.join('?' * len(closed_sources))}))" if closed_sources else ""
            exclude += held
            head = db.execute(
                f"SELECT destination FROM tasks WHERE state = ? AND next_attempt_at <= ?{exclude}"
                f" ORDER BY priority DESC, next_attempt_at, id LIMIT 1", (PENDING, now, *busy, *closed_sources)).fetchone()
            if head is None:
                return []
            rows = db.execute(
                f"UPDATE tasks SET state = ?, owner = ?, heartbeat_at = ?, updated_at = ?"
                f" WHERE id IN (SELECT id FROM tasks WHERE state = ? AND next_attempt_at <= ? AND destination = ?"
                f"  AND (job_id IS NULL OR job_id NOT IN (SELECT id FROM jobs WHERE paused = 1)){held}"
                f"  ORDER BY priority DESC, next_attempt_at, id LIMIT ?)"
                f" RETURNING {', '.join(TASK_COLUMNS)}",
                (RUNNING, owner, now, now, PENDING, now, head[0], *closed_sources, limit)).fetchall()
        return sorted((dict(r) for r in rows), key=lambda t: (-t["priority"], t["id"]))

    def next_due_in(self) -> Optional[float]:
        row = self._db().execute("SELECT MIN(next_attempt_at) FROM tasks WHERE state = ?", (PENDING,)).fetchone()
        return None if row[0] is None else max(0.0, row[0] - self.clock())

    def manifests(self, task_ids: Sequence[int]) -> dict[int, list[ManifestItem]]:
        found: dict[int, list[ManifestItem]] = {task_id: [] for task_id in task_ids}
        if task_ids:
            rows = self._db().execute(
                f"SELECT task_id, instance_id, sop_instance_uid, size, delivered FROM task_instances"
                f" WHERE task_id IN ({', '.join('?' * len(task_ids))}) ORDER BY rowid", tuple(task_ids)).fetchall()
            for r in rows:
                found[r[0]].append(ManifestItem(r[1], r[2], r[3], bool(r[4])))
        return found

    def save_manifests(self, manifests: Mapping[int, Sequence[ManifestItem]]) -> None:
        with self._transaction() as db:
            for task_id, items in manifests.items():
                db.executemany("INSERT OR IGNORE INTO task_instances (task_id, instance_id, sop_instance_uid, size)"
                               " VALUES (?, ?, ?, ?)", [(task_id, i.instance_id, i.sop_instance_uid, i.size) for i in items])
                db.execute("UPDATE tasks SET expected = (SELECT COUNT(*) FROM task_instances WHERE task_id = ?)"
                           " WHERE id = ?", (task_id, task_id))

    def finish_attempts(self, owner: str, attempts: Sequence[Attempt]) -> list[int]:
        """Record the result of one attempt of each task, in one transaction. Returns the ids
        recorded; a task cancelled (or taken by another worker) meanwhile is left as it is."""
        now = self.clock()
        recorded = []
        with self._transaction() as db:
            for a in attempts:
                task = a.task
                current = db.execute("SELECT state, owner FROM tasks WHERE id = ?", (task["id"],)).fetchone()
                if current is None or current["state"] != RUNNING or current["owner"] != owner:
                    continue
                delivered = list(a.delivered_ids)
                if delivered:
                    db.executemany("UPDATE task_instances SET delivered = 1 WHERE task_id = ? AND instance_id = ?",
                                   [(task["id"], i) for i in delivered])
                totals = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM task_instances"
                                    " WHERE task_id = ? AND delivered = 1", (task["id"],)).fetchone()
                fresh_bytes = db.execute(
                    f"SELECT COALESCE(SUM(size), 0) FROM task_instances WHERE task_id = ? AND instance_id IN"
                    f" ({', '.join('?' * len(delivered))})", (task["id"], *delivered)).fetchone()[0] if delivered else 0
                db.execute(
                    "UPDATE tasks SET state = ?, attempts = attempts + 1, delivered = ?, bytes = ?, last_error = ?,"
                    " next_attempt_at = ?, updated_at = ?, finished_at = ?,"
                    " owner = CASE WHEN ? = 'PENDING' THEN NULL ELSE owner END WHERE id = ?",
                    (a.state, totals[0], totals[1], a.error, now + (a.retry_in or 0), now,
                     now if a.state in FINAL_STATES else None, a.state, task["id"]))
                db.execute("INSERT INTO destination_stats (destination, delivered_instances, failed_instances,"
                           " delivered_bytes) VALUES (?, ?, ?, ?) ON CONFLICT(destination) DO UPDATE SET"
                           " delivered_instances = delivered_instances + excluded.delivered_instances,"
                           " failed_instances = failed_instances + excluded.failed_instances,"
                           " delivered_bytes = delivered_bytes + excluded.delivered_bytes",
                           (task["destination"], len(delivered), a.failed, fresh_bytes))
                detail = {"attempt": task["attempts"] + 1, "delivered": totals[0], "expected": task.get("expected")}
                if a.error:
                    detail["error"] = a.error
                self._audit(db, [AuditEvent(OUTCOME_ACTIONS[a.state], route=task["route"],
                                            destination=task["destination"], resource_id=task["resource_id"],
                                            task_id=task["id"], detail=detail)])
                recorded.append(task["id"])
        return recorded

    def heartbeat(self, owner: str) -> None:
        now = self.clock()
        with self._transaction() as db:
            db.execute("UPDATE tasks SET heartbeat_at = ? WHERE state = ? AND owner = ?", (now, RUNNING, owner))

    def requeue_abandoned(self, node_prefix: str, stale_after: float) -> int:
        """RUNNING tasks of a dead incarnation of this node, or with a lost heartbeat, go back to PENDING."""
        now = self.clock()
        with self._transaction() as db:
            rows = db.execute(
                "UPDATE tasks SET state = ?, owner = NULL, next_attempt_at = ?, updated_at = ?"
                " WHERE state = ? AND (owner LIKE ? OR heartbeat_at < ?) RETURNING id, route, destination, resource_id",
                (PENDING, now, now, RUNNING, node_prefix + "%", now - stale_after)).fetchall()
            self._audit(db, [AuditEvent("task-requeued", route=r[1], destination=r[2], resource_id=r[3],
                                        task_id=r[0], detail={"reason": "worker gone"}) for r in rows])
        return len(rows)

    def active_tasks_for_resource(self, resource_id: str) -> int:
        row = self._db().execute("SELECT COUNT(*) FROM tasks WHERE resource_id = ? AND state IN (?, ?)",
                                 (resource_id, PENDING, RUNNING)).fetchone()
        return row[0]

    def unfinished_for_resource(self, resource_id: str) -> int:
        row = self._db().execute("SELECT COUNT(*) FROM tasks WHERE resource_id = ? AND state != ?",
                                 (resource_id, SUCCESS)).fetchone()
        return row[0]

    # -- REST -------------------------------------------------------------------------------
    def task(self, task_id: int) -> Optional[dict]:
        row = self._db().execute(f"SELECT {', '.join(TASK_COLUMNS)} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            return None
        task = dict(row)
        task["missing"] = [r[0] for r in self._db().execute(
            "SELECT sop_instance_uid FROM task_instances WHERE task_id = ? AND delivered = 0 ORDER BY rowid",
            (task_id,)).fetchall()]
        return task

    def tasks(self, state: Optional[str] = None, route: Optional[str] = None, destination: Optional[str] = None,
              limit: int = 100, offset: int = 0, job_id: Optional[int] = None) -> tuple[int, list[dict]]:
        where, args = [], []
        for column, value in (("state", state), ("route", route), ("destination", destination), ("job_id", job_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = self._db().execute(f"SELECT COUNT(*) FROM tasks{clause}", args).fetchone()[0]
        rows = self._db().execute(f"SELECT {', '.join(TASK_COLUMNS)} FROM tasks{clause} ORDER BY id DESC"
                                  f" LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return total, [dict(r) for r in rows]

    def set_state(self, task_id: int, allowed_from: Sequence[str], state: str, actor: str, action: str) -> Optional[str]:
        """Move a task to `state` if it is in one of `allowed_from`; returns its former state or None."""
        now = self.clock()
        with self._transaction() as db:
            row = db.execute("SELECT state, route, destination, resource_id FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()
            if row is None or row["state"] not in allowed_from:
                return None if row is None else "!" + row["state"]
            reset = ", attempts = 0, next_attempt_at = ?, finished_at = NULL, owner = NULL" if state == PENDING \
                else ", finished_at = ?"
            db.execute(f"UPDATE tasks SET state = ?, updated_at = ?{reset} WHERE id = ?", (state, now, now, task_id))
            self._audit(db, [AuditEvent(action, actor=actor, route=row["route"], destination=row["destination"],
                                        resource_id=row["resource_id"], task_id=task_id,
                                        detail={"from": row["state"]})])
        return row["state"]

    def audit_log(self, action: Optional[str] = None, actor: Optional[str] = None, route: Optional[str] = None,
                  task_id: Optional[int] = None, since: Optional[float] = None,
                  limit: int = 100, offset: int = 0, node: Optional[str] = None,
                  until: Optional[float] = None) -> tuple[int, list[dict]]:
        where, args = [], []
        for column, op, value in (("action", "=", action), ("actor", "=", actor), ("route", "=", route),
                                  ("task_id", "=", task_id), ("at", ">=", since), ("at", "<", until),
                                  ("destination", "=", node)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        total = self._db().execute(f"SELECT COUNT(*) FROM audit{clause}", args).fetchone()[0]
        rows = self._db().execute(f"SELECT * FROM audit{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                                  (*args, limit, offset)).fetchall()
        entries = []
        for r in rows:
            entry = dict(r)
            entry["detail"] = json.loads(entry["detail"]) if entry["detail"] else None
            entries.append(entry)
        return total, entries

    def queue_depth(self) -> dict[str, int]:
        depth = {state: 0 for state in STATES}
        for state, count in self._db().execute("SELECT state, COUNT(*) FROM tasks GROUP BY state"):
            depth[state] = count
        return depth

    def destination_stats(self) -> dict[str, dict]:
        stats: dict[str, dict] = {}
        for row in self._db().execute("SELECT destination, state, COUNT(*) FROM tasks GROUP BY destination, state"):
            stats.setdefault(row[0], {"tasks": {s: 0 for s in STATES}})["tasks"][row[1]] = row[2]
        for row in self._db().execute("SELECT * FROM destination_stats"):
            entry = stats.setdefault(row["destination"], {"tasks": {s: 0 for s in STATES}})
            entry.update(delivered_instances=row["delivered_instances"], failed_instances=row["failed_instances"],
                         delivered_bytes=row["delivered_bytes"])
        for entry in stats.values():
            entry.setdefault("delivered_instances", 0)
            entry.setdefault("failed_instances", 0)
            entry.setdefault("delivered_bytes", 0)
        return stats

    def route_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for route, state, count in self._db().execute("SELECT route, state, COUNT(*) FROM tasks GROUP BY route, state"):
            counts.setdefault(route, {})[state] = count
        return counts

    # -- pseudonymization --------------------------------------------------------------------
    def record_crosswalk(self, profile: str, patients: Iterable[tuple[str, str]], uids: Mapping[str, str]) -> None:
        now = self.clock()
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO crosswalk_patients (profile, original, pseudonym, first_seen)"
                           " VALUES (?, ?, ?, ?)", [(profile, o, p, now) for o, p in patients])
            db.executemany("INSERT OR IGNORE INTO crosswalk_uids (profile, original, new) VALUES (?, ?, ?)",
                           [(profile, o, n) for o, n in uids.items()])

    def crosswalk(self, profile: str, kind: str) -> list[tuple[str, str]]:
        query = {"patients": "SELECT original, pseudonym FROM crosswalk_patients WHERE profile = ? ORDER BY first_seen, original",
                 "uids": "SELECT original, new FROM crosswalk_uids WHERE profile = ? ORDER BY rowid"}[kind]
        return [(r[0], r[1]) for r in self._db().execute(query, (profile,))]

    def quarantine(self, reason: str, disposition: str, profile: Optional[str] = None, route: Optional[str] = None,
                   task_id: Optional[int] = None, instance_id: Optional[str] = None,
                   sop_instance_uid: Optional[str] = None, file: Optional[str] = None) -> int:
        with self._transaction() as db:
            cur = db.execute("INSERT INTO quarantine (at, profile, route, task_id, instance_id, sop_instance_uid,"
                             " reason, disposition, file) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (self.clock(), profile, route, task_id, instance_id, sop_instance_uid, reason,
                              disposition, file))
            self._audit(db, [AuditEvent("instance-quarantined" if disposition == "quarantine" else "instance-refused",
                                        route=route, resource_id=instance_id, task_id=task_id,
                                        detail={"reason": reason, "quarantine_id": cur.lastrowid})])
        return cur.lastrowid

    def quarantine_entry(self, entry_id: int) -> Optional[dict]:
        row = self._db().execute("SELECT * FROM quarantine WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else dict(row)

    def release_quarantined(self, entry_id: int, actor: str, task: Optional[NewTask]) -> list[int]:
        """Forget the entry; with `task`, queue it (same transaction) to deliver the instance."""
        with self._transaction() as db:
            db.execute("DELETE FROM quarantine WHERE id = ?", (entry_id,))
            self._audit(db, [AuditEvent("quarantine-released", actor=actor, detail={"quarantine_id": entry_id})])
        return self.enqueue([task]) if task else []

    def delete_quarantined(self, entry_id: int, actor: str) -> Optional[dict]:
        with self._transaction() as db:
            row = db.execute("SELECT * FROM quarantine WHERE id = ?", (entry_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM quarantine WHERE id = ?", (entry_id,))
            self._audit(db, [AuditEvent("quarantine-deleted", actor=actor, route=row["route"], task_id=row["task_id"],
                                        resource_id=row["instance_id"], detail={"quarantine_id": entry_id})])
        return dict(row)

    def quarantined(self, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        total = self._db().execute("SELECT COUNT(*) FROM quarantine").fetchone()[0]
        rows = self._db().execute("SELECT * FROM quarantine ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
        return total, [dict(r) for r in rows]

    def load_lookup(self, profile: str, rows: Sequence[tuple[str, str]]) -> int:
        """Add or replace (PatientID, pseudonym) rows of a profile's lookup table."""
        with self._transaction() as db:
            db.executemany("INSERT INTO lookup_patients (profile, original, pseudonym) VALUES (?, ?, ?)"
                           " ON CONFLICT(profile, original) DO UPDATE SET pseudonym = excluded.pseudonym",
                           [(profile, o, p) for o, p in rows])
        return len(rows)

    def lookup_pseudonym(self, profile: str, original: str) -> Optional[str]:
        row = self._db().execute("SELECT pseudonym FROM lookup_patients WHERE profile = ? AND original = ?",
                                 (profile, original)).fetchone()
        return None if row is None else row[0]

    def crosswalk_pseudonym(self, profile: str, original: str) -> Optional[str]:
        row = self._db().execute("SELECT pseudonym FROM crosswalk_patients WHERE profile = ? AND original = ?",
                                 (profile, original)).fetchone()
        return None if row is None else row[0]

    # -- nodes -------------------------------------------------------------------------------
    def record_echo(self, node: str, ok: bool, message: str, actor: str) -> None:
        now = self.clock()
        with self._transaction() as db:
            db.execute("INSERT INTO node_status (node, at, ok, message) VALUES (?, ?, ?, ?) ON CONFLICT(node)"
                       " DO UPDATE SET at = excluded.at, ok = excluded.ok, message = excluded.message",
                       (node, now, int(ok), message))
            self._audit(db, [AuditEvent("node-echoed", actor=actor, destination=node, detail={"ok": ok})])

    def node_statuses(self) -> dict[str, dict]:
        return {r["node"]: {"At": r["at"], "Ok": bool(r["ok"]), "Message": r["message"]}
                for r in self._db().execute("SELECT * FROM node_status")}

    # -- transfer jobs -----------------------------------------------------------------------
    def create_job(self, actor: str, source: str, destination: str, profile: Optional[str], urgent: bool,
                   targets: Sequence[JobTarget], archive_password: Optional[str] = None,
                   trial: Optional[Mapping[str, str]] = None) -> int:
        """A job and one task per study or series."""
        now = self.clock()
        with self._transaction() as db:
            job_id = db.execute("INSERT INTO jobs (created_at, created_by, source, destination, profile, urgent,"
                                " archive_password, trial) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                (now, actor, source, destination, profile, int(urgent), archive_password,
                                 json.dumps(trial) if trial else None)).lastrowid
            for t in targets:
                db.execute("INSERT INTO tasks (route, destination, level, resource_id, state, priority, next_attempt_at,"
                           " created_at, updated_at, delete_after, profile, job_id, source, study_uid, series_uid, study_id)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (f"job-{job_id}", destination, "Series" if t.series_uid else "Study", t.resource_id, PENDING,
                            100 if urgent else 0, now, now, now, int(not t.present), profile, job_id, source, t.study_uid,
                            t.series_uid, t.study_id))
            self._audit(db, [AuditEvent("job-created", actor=actor, route=f"job-{job_id}", destination=destination,
                                        detail={"job": job_id, "source": source, "tasks": len(targets)})])
        return job_id

    def replace_manifest(self, task_id: int, items: Sequence[ManifestItem]) -> None:
        """A job task's manifest after a fetch: rows not yet delivered are replaced."""
        with self._transaction() as db:
            delivered = {r[0] for r in db.execute(
                "SELECT sop_instance_uid FROM task_instances WHERE task_id = ? AND delivered = 1", (task_id,))}
            db.execute("DELETE FROM task_instances WHERE task_id = ? AND delivered = 0", (task_id,))
            db.executemany("INSERT OR IGNORE INTO task_instances (task_id, instance_id, sop_instance_uid, size)"
                           " VALUES (?, ?, ?, ?)", [(task_id, i.instance_id, i.sop_instance_uid, i.size)
                                                    for i in items if i.sop_instance_uid not in delivered])
            db.execute("UPDATE tasks SET expected = (SELECT COUNT(*) FROM task_instances WHERE task_id = ?)"
                       " WHERE id = ?", (task_id, task_id))

    def job_study_ids(self) -> set[str]:
        """Orthanc study IDs that unfinished jobs are fetching: routes leave them alone."""
        return {r[0] for r in self._db().execute(
            "SELECT COALESCE(study_id, resource_id) FROM tasks WHERE job_id IS NOT NULL AND state IN (?, ?)",
            (PENDING, RUNNING))}

    def task_state(self, task_id: int) -> Optional[str]:
        row = self._db().execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else row[0]

    def job_archive_password(self, job_id: int) -> Optional[str]:
        row = self._db().execute("SELECT archive_password FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def job(self, job_id: int) -> Optional[dict]:
        row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = dict(row)
        job.pop("archive_password", None)              # a secret: never leaves the store this way
        job["trial"] = json.loads(job["trial"]) if job.get("trial") else {}
        job["tasks"] = {s: 0 for s in STATES}
        for state, count in self._db().execute("SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state", (job_id,)):
            job["tasks"][state] = count
        totals = self._db().execute(
            "SELECT COALESCE(SUM(expected), 0), COALESCE(SUM(delivered), 0), COALESCE(SUM(bytes), 0),"
            " MIN(created_at), MAX(finished_at) FROM tasks WHERE job_id = ?", (job_id,)).fetchone()
        job.update(instances_expected=totals[0], instances_delivered=totals[1], bytes=totals[2],
                   started_at=totals[3], last_finished_at=totals[4])
        return job

    def jobs(self, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        total = self._db().execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        ids = [r[0] for r in self._db().execute("SELECT id FROM jobs ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))]
        return total, [self.job(i) for i in ids]

    def control_job(self, job_id: int, action: str, actor: str) -> bool:
        """pause | resume | cancel | retry | urgent | normal; False if there is no such job."""
        now = self.clock()
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return False
            if action in ("pause", "resume"):
                db.execute("UPDATE jobs SET paused = ? WHERE id = ?", (int(action == "pause"), job_id))
            elif action == "cancel":
                db.execute("UPDATE jobs SET canceled = 1 WHERE id = ?", (job_id,))
                db.execute("UPDATE tasks SET state = ?, updated_at = ?, finished_at = ? WHERE job_id = ? AND state IN (?, ?)",
                           (CANCELED, now, now, job_id, PENDING, RUNNING))
            elif action == "retry":
                db.execute("UPDATE jobs SET canceled = 0 WHERE id = ?", (job_id,))
                db.execute("UPDATE tasks SET state = ?, attempts = 0, next_attempt_at = ?, updated_at = ?, finished_at = NULL,"
                           " owner = NULL WHERE job_id = ? AND state IN (?, ?, ?)",
                           (PENDING, now, now, job_id, FAILURE, WARNING, CANCELED))
            elif action in ("urgent", "normal"):
                db.execute("UPDATE jobs SET urgent = ? WHERE id = ?", (int(action == "urgent"), job_id))
                db.execute("UPDATE tasks SET priority = ? WHERE job_id = ?", (100 if action == "urgent" else 0, job_id))
            self._audit(db, [AuditEvent(f"job-{action}", actor=actor, route=f"job-{job_id}", detail={"job": job_id})])
        return True

    # -- batch files -------------------------------------------------------------------------
    def create_batch(self, actor: str, kind: str, source: str, file_name: str, rows: Sequence[dict],
                     job_id: Optional[int] = None, results: Optional[list] = None,
                     pseudonyms: Mapping[str, str] = {}) -> int:
        with self._transaction() as db:
            batch_id = db.execute("INSERT INTO batches (created_at, created_by, kind, source, file_name, job_id, rows,"
                                  " results) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  (self.clock(), actor, kind, source, file_name, job_id, json.dumps(list(rows)),
                                   None if results is None else json.dumps(results))).lastrowid
            if job_id is not None:
                db.executemany("INSERT OR REPLACE INTO job_pseudonyms (job_id, patient_id, pseudonym) VALUES (?, ?, ?)",
                               [(job_id, p, s) for p, s in pseudonyms.items()])
            self._audit(db, [AuditEvent("batch-created", actor=actor, detail={"batch": batch_id, "kind": kind,
                                                                              "rows": len(rows), "job": job_id})])
        return batch_id

    def batch(self, batch_id: int) -> Optional[dict]:
        row = self._db().execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        batch = dict(row)
        batch["rows"] = json.loads(batch["rows"])
        batch["results"] = json.loads(batch["results"]) if batch["results"] else None
        return batch

    def job_pseudonyms(self, job_id: int) -> dict[str, str]:
        return {r[0]: r[1] for r in self._db().execute(
            "SELECT patient_id, pseudonym FROM job_pseudonyms WHERE job_id = ?", (job_id,))}

    def job_tasks_by_target(self, job_id: int) -> dict[tuple[str, str], dict]:
        """Tasks of a job by (StudyInstanceUID, SeriesInstanceUID or "")."""
        return {(r["study_uid"], r["series_uid"] or ""): dict(r) for r in self._db().execute(
            "SELECT id, study_uid, series_uid, state, expected, delivered, last_error FROM tasks WHERE job_id = ?",
            (job_id,))}

    def deliveries_per_hour(self, now: float) -> list[int]:
        """Delivered tasks per hour over the last 24 hours, oldest first."""
        counts = [0] * 24
        for (finished,) in self._db().execute("SELECT finished_at FROM tasks WHERE state = ? AND finished_at >= ?",
                                              (SUCCESS, now - 24 * 3600)):
            counts[min(23, int((finished - (now - 24 * 3600)) // 3600))] += 1
        return counts
