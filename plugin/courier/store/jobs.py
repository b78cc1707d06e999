"""Transfer jobs (one task per study or series of a job, in the tasks table), their per-patient
pseudonyms from batch files, and the batches themselves (rows and results)."""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

from courier.store.audit import write as write_audit
from courier.store.database import SQLiteDatabase
from courier.store.records import CANCELED, FAILURE, PENDING, RUNNING, STATES, WARNING, AuditEvent, Job, JobTarget
from courier.store.routers import lease_free


def insert_job(db: Any, now: float, actor: str, source: str, destination: str, profile: Optional[str], urgent: bool,
               archive_password: Optional[str] = None, trial: Optional[Mapping[str, str]] = None,
               subscription_id: Optional[int] = None, pause_seconds: float = 0.0, phase: Optional[str] = None,
               paused: bool = False) -> int:
    return db.execute("INSERT INTO jobs (created_at, created_by, source, destination, profile, urgent, archive_password,"
                      " trial, subscription_id, pause_seconds, phase, paused) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      " RETURNING id",
                      (now, actor, source, destination, profile, int(urgent), archive_password,
                       json.dumps(trial) if trial else None, subscription_id, pause_seconds, phase,
                       int(paused))).fetchone()[0]


def insert_job_tasks(db: Any, now: float, job_id: int, destination: str, profile: Optional[str], urgent: bool,
                     targets: Sequence[JobTarget], spacing: float = 0.0, first: int = 0) -> list[int]:
    """One PENDING task per target; with `spacing`, the k-th is due (first + k) * spacing seconds from now."""
    return [db.execute(
        "INSERT INTO tasks (route, destination, level, resource_id, state, priority, next_attempt_at, created_at,"
        " updated_at, delete_after, profile, job_id, source, study_uid, series_uid, study_id, patient_id, availability)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, source, ?, ?, ?, ?, ? FROM jobs WHERE id = ? RETURNING id",
        (f"job-{job_id}", destination, "Series" if t.series_uid else "Study", t.resource_id, PENDING,
         100 if urgent else 0, now + (first + index) * spacing, now, now, int(not t.present), profile, job_id, t.study_uid,
         t.series_uid, t.study_id, t.patient_id, t.availability or None, job_id)).fetchone()[0]
        for index, t in enumerate(targets)]


def _new_targets(db: Any, job_id: int, targets: Sequence[JobTarget]) -> list[JobTarget]:
    """The targets a job has no task for yet (by StudyInstanceUID and SeriesInstanceUID)."""
    have = {(r[0], r[1] or "") for r in db.execute("SELECT study_uid, series_uid FROM tasks WHERE job_id = ?", (job_id,))}
    fresh: dict[tuple[str, str], JobTarget] = {}
    for target in targets:
        key = (target.study_uid, target.series_uid or "")
        if key not in have:
            fresh.setdefault(key, target)
    return list(fresh.values())


class Jobs:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database, self.clock = database, database.clock

    def create(self, actor: str, source: str, destination: str, profile: Optional[str], urgent: bool,
               targets: Sequence[JobTarget], archive_password: Optional[str] = None,
               trial: Optional[Mapping[str, str]] = None, items: Sequence[dict] = (), start: bool = True,
               modify: Optional[Mapping[str, Any]] = None) -> int:
        """A job and one task per study or series; or, with `items` (resolved in the background,
        see `resolve_next`), a job in phase QUERYING that has its tasks once they are resolved."""
        now = self.clock()
        with self.database.transaction() as db:
            job_id = insert_job(db, now, actor, source, destination, profile, urgent, archive_password, trial,
                                phase="QUERYING" if items else None, paused=bool(items))
            insert_job_tasks(db, now, job_id, destination, profile, urgent, targets)
            db.executemany("INSERT INTO job_items (job_id, idx, item) VALUES (?, ?, ?)",
                           [(job_id, index, json.dumps(item)) for index, item in enumerate(items)])
            db.execute("UPDATE jobs SET start_when_ready = ?, modify = ? WHERE id = ?",
                       (int(start), json.dumps(modify) if modify else None, job_id))
            write_audit(db, now, [AuditEvent("job-created", actor=actor, route=f"job-{job_id}", destination=destination,
                                        detail={"job": job_id, "source": source, "tasks": len(targets),
                                                "items": len(items)})])
        return job_id

    def modify_of(self, job_id: int) -> Optional[dict]:
        """The job's Modify as it was given (config.modify), or None."""
        row = self.database.read().execute("SELECT modify FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    # -- items resolved in the background (phase QUERYING -> READY -> started) ------------------
    def querying(self, stale_after: Optional[float] = None) -> list[int]:
        free, params = lease_free("jobs", self.clock(), stale_after)
        return [r[0] for r in self.database.read().execute(
            f"SELECT id FROM jobs WHERE phase = 'QUERYING' AND canceled = 0 AND {free} ORDER BY id", params).fetchall()]

    def take_items(self, job_id: int, owner: str, lease_seconds: float, limit: int,
                   stale_after: Optional[float] = None) -> Optional[tuple[str, list]]:
        """(source, [(index, item)]) of the next unresolved items of a QUERYING job, leased to `owner`
        (taken over from a router that is gone: routers.lease_free)."""
        now = self.clock()
        free, params = lease_free("jobs", now, stale_after)
        with self.database.transaction() as db:
            row = db.execute("UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE id = ? AND phase = 'QUERYING'"
                             f" AND {free} RETURNING source", (owner, now + lease_seconds, job_id, *params)).fetchone()
            if row is None:
                return None
            items = [(r[0], json.loads(r[1])) for r in db.execute(
                "SELECT idx, item FROM job_items WHERE job_id = ? AND resolved = 0 ORDER BY idx LIMIT ?", (job_id, limit))]
        return row[0], items

    def resolved_items(self, job_id: int, owner: str, outcomes: Mapping[int, Any],
                       retry_at: Optional[float] = None) -> bool:
        """Record resolved items (index -> its targets, or the error why it found nothing) as tasks,
        held while the job is not started; once none is left the job is READY, or starts if it was
        made with Start now. With `retry_at` (the source did not answer) the rest waits until then.
        True if it started."""
        now = self.clock()
        with self.database.transaction() as db:
            job = db.execute("SELECT destination, profile, urgent, start_when_ready, lease_owner FROM jobs WHERE id = ?"
                             f"{self.database.FOR_UPDATE}", (job_id,)).fetchone()     # a takeover waits for this
            if job is None or job["lease_owner"] != owner:
                return False
            for index, outcome in outcomes.items():
                if isinstance(outcome, str):
                    db.execute("UPDATE job_items SET resolved = 1, error = ? WHERE job_id = ? AND idx = ?",
                               (outcome[:500], job_id, index))
                    continue
                fresh = _new_targets(db, job_id, outcome)
                insert_job_tasks(db, now, job_id, job["destination"], job["profile"], bool(job["urgent"]), fresh)
                db.execute("UPDATE job_items SET resolved = 1, targets = ? WHERE job_id = ? AND idx = ?",
                           (len(fresh), job_id, index))
            left = db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ? AND resolved = 0", (job_id,)).fetchone()[0]
            started = not left and bool(job["start_when_ready"])
            if not left:
                db.execute("UPDATE jobs SET phase = ?, paused = ? WHERE id = ?",
                           (None if started else "READY", 0 if started else 1, job_id))
            db.execute("UPDATE jobs SET lease_owner = NULL, lease_until = ? WHERE id = ? AND lease_owner = ?",
                       (retry_at, job_id, owner))
        return started

    def release_leases(self, owner_prefix: str) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner LIKE ?",
                       (owner_prefix + "%",))

    def add_targets(self, job_id: int, actor: str, targets: Sequence[JobTarget]) -> int:
        """More studies or series for a job (those it has already are left out); returns how many."""
        now = self.clock()
        with self.database.transaction() as db:
            job = db.execute("SELECT destination, profile, urgent FROM jobs WHERE id = ?", (job_id,)).fetchone()
            fresh = _new_targets(db, job_id, targets)
            insert_job_tasks(db, now, job_id, job["destination"], job["profile"], bool(job["urgent"]), fresh)
            db.execute("UPDATE jobs SET canceled = 0 WHERE id = ?", (job_id,))
            write_audit(db, now, [AuditEvent("job-items-added", actor=actor, route=f"job-{job_id}",
                                             detail={"job": job_id, "tasks": len(fresh)})])
        return len(fresh)

    def start(self, job_id: int, actor: str) -> Optional[str]:
        """A READY job starts (None), or the reason it cannot."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT phase FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row["phase"] == "QUERYING":
                db.execute("UPDATE jobs SET start_when_ready = 1 WHERE id = ?", (job_id,))
            elif row["phase"] == "READY":
                db.execute("UPDATE jobs SET phase = NULL, paused = 0 WHERE id = ?", (job_id,))
            else:
                return f"job {job_id} has started already"
            write_audit(db, now, [AuditEvent("job-start", actor=actor, route=f"job-{job_id}", detail={"job": job_id})])
        return None

    def delete(self, job_id: int, actor: str) -> Optional[str]:
        """Forget a finished job, its tasks, manifests, pseudonyms and batches (the audit entries stay);
        the reason it cannot be deleted, if any."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT subscription_id FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row["subscription_id"] is not None:
                return f"job {job_id} belongs to subscription {row['subscription_id']}; delete the subscription first"
            active = db.execute("SELECT COUNT(*) FROM tasks WHERE job_id = ? AND state IN (?, ?)",
                                (job_id, PENDING, RUNNING)).fetchone()[0]
            if active:
                return f"job {job_id} has {active} task(s) PENDING or RUNNING; cancel it first"
            fetched = db.execute("SELECT COUNT(*) FROM tasks WHERE job_id = ? AND state = ? AND phase = 'send'",
                                 (job_id, CANCELED)).fetchone()[0]
            if fetched:             # the rows are the only record of a copy still to delete (Engine)
                return f"job {job_id}: {fetched} study(ies) it fetched are still being deleted; try again in a minute"
            db.execute("DELETE FROM task_instances WHERE task_id IN (SELECT id FROM tasks WHERE job_id = ?)", (job_id,))
            for table in ("tasks", "job_pseudonyms", "job_items", "batches"):
                db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            write_audit(db, now, [AuditEvent("job-deleted", actor=actor, route=f"job-{job_id}", detail={"job": job_id})])
        return None

    def delete_batch(self, batch_id: int, actor: str) -> Optional[str]:
        """Forget a batch (and its job, if it made one, on the same terms as `delete`)."""
        row = self.database.read().execute("SELECT job_id FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row["job_id"] is not None:
            return self.delete(row["job_id"], actor)
        with self.database.transaction() as db:
            db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            write_audit(db, self.clock(), [AuditEvent("batch-deleted", actor=actor, detail={"batch": batch_id})])
        return None

    def is_paused(self, job_id: int) -> bool:
        row = self.database.read().execute("SELECT paused FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def pause_after_study(self, job_id: int) -> None:
        """A job with a break between studies: its next study is fetched no sooner than the break from
        now (studies fetched already are sent without waiting: the break spares the source)."""
        row = self.database.read().execute("SELECT pause_seconds FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or not row[0]:
            return
        until = self.clock() + row[0]
        with self.database.transaction() as db:            # the next study after the break, the others a break apart
            due = [r[0] for r in db.execute("SELECT id FROM tasks WHERE job_id = ? AND state = ? AND"
                                            " COALESCE(phase, '') <> 'send' ORDER BY priority DESC, next_attempt_at, id",
                                            (job_id, PENDING)).fetchall()]
            db.executemany("UPDATE tasks SET next_attempt_at = ? WHERE id = ? AND next_attempt_at < ?",
                           [(until + k * row[0], task_id, until + k * row[0]) for k, task_id in enumerate(due)])

    def needs_check(self, job_id: int) -> bool:
        """Has the job not yet seen its source and destination answer (the pre-check)?"""
        row = self.database.read().execute("SELECT checked_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None and row[0] is None

    def checked(self, job_id: int, error: Optional[str], retry_at: float) -> None:
        """The pre-check's outcome: passed (the job goes on), or the reason, shown on the job, and its
        tasks wait until `retry_at` for the next check instead of failing one by one."""
        with self.database.transaction() as db:
            if error is None:
                db.execute("UPDATE jobs SET checked_at = ?, check_error = NULL WHERE id = ?", (self.clock(), job_id))
            else:
                db.execute("UPDATE jobs SET check_error = ? WHERE id = ?", (error[:500], job_id))
                db.execute("UPDATE tasks SET next_attempt_at = ? WHERE job_id = ? AND state = ? AND next_attempt_at < ?",
                           (retry_at, job_id, PENDING, retry_at))

    def archive_password(self, job_id: int) -> Optional[str]:
        row = self.database.read().execute("SELECT archive_password FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def get(self, job_id: int) -> Optional[Job]:
        """The job with its task counts (never its archive password: that secret stays here)."""
        db = self.database.read()
        row = db.execute("SELECT id, created_at, created_by, source, destination, profile, urgent, paused, canceled,"
                         " trial, subscription_id, phase, pause_seconds, check_error FROM jobs WHERE id = ?",
                         (job_id,)).fetchone()
        if row is None:
            return None
        tasks = {s: 0 for s in STATES}
        for state, count in db.execute("SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state", (job_id,)):
            tasks[state] = count
        totals = db.execute(
            "SELECT CAST(COALESCE(SUM(expected), 0) AS BIGINT), CAST(COALESCE(SUM(delivered), 0) AS BIGINT),"
            " CAST(COALESCE(SUM(bytes), 0) AS BIGINT), MIN(created_at), MAX(finished_at) FROM tasks WHERE job_id = ?",
            (job_id,)).fetchone()
        items = {}
        if row["phase"] is not None:
            counts = db.execute("SELECT COUNT(*), COALESCE(SUM(resolved), 0), COALESCE(SUM(CASE WHEN error IS NULL THEN 0"
                                " ELSE 1 END), 0) FROM job_items WHERE job_id = ?", (job_id,)).fetchone()
            items = {"Total": counts[0], "Resolved": int(counts[1]), "Failed": int(counts[2])}
        return Job(row["id"], row["created_at"], row["created_by"], row["source"], row["destination"], row["profile"],
                   bool(row["urgent"]), bool(row["paused"]), bool(row["canceled"]),
                   json.loads(row["trial"]) if row["trial"] else {}, tasks, *totals,
                   subscription_id=row["subscription_id"], phase=row["phase"], items=items,
                   pause_seconds=row["pause_seconds"] or 0.0, check_error=row["check_error"])

    def list(self, limit: int = 100, offset: int = 0) -> tuple[int, list[Job]]:
        db = self.database.read()
        total = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        ids = [r[0] for r in db.execute("SELECT id FROM jobs ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))]
        return total, [self.get(i) for i in ids]

    def control(self, job_id: int, action: str, actor: str) -> bool:
        """pause | resume | cancel | retry | urgent | normal; False if there is no such job."""
        now = self.clock()
        with self.database.transaction() as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return False
            if action in ("pause", "resume"):
                db.execute("UPDATE jobs SET paused = ? WHERE id = ?", (int(action == "pause"), job_id))
            elif action == "cancel":
                db.execute("UPDATE jobs SET canceled = 1 WHERE id = ?", (job_id,))
                db.execute("UPDATE tasks SET state = ?, updated_at = ?, finished_at = ? WHERE job_id = ? AND state IN (?, ?)",
                           (CANCELED, now, now, job_id, PENDING, RUNNING))
            elif action == "retry":           # failed tasks again, and waiting ones (a failed pre-check) now
                # a failed pre-check is checked again at once: until then the job is not UNREACHABLE
                db.execute("UPDATE jobs SET canceled = 0, check_error = NULL WHERE id = ?", (job_id,))
                db.execute("UPDATE tasks SET next_attempt_at = ? WHERE job_id = ? AND state = ? AND next_attempt_at > ?",
                           (now, job_id, PENDING, now))
                db.execute("UPDATE tasks SET state = ?, attempts = 0, next_attempt_at = ?, updated_at = ?, finished_at = NULL,"
                           " owner = NULL, phase = NULL WHERE job_id = ? AND state IN (?, ?, ?)",
                           (PENDING, now, now, job_id, FAILURE, WARNING, CANCELED))
            elif action in ("urgent", "normal"):
                db.execute("UPDATE jobs SET urgent = ? WHERE id = ?", (int(action == "urgent"), job_id))
                db.execute("UPDATE tasks SET priority = ? WHERE job_id = ?", (100 if action == "urgent" else 0, job_id))
            write_audit(db, now, [AuditEvent(f"job-{action}", actor=actor, route=f"job-{job_id}", detail={"job": job_id})])
        return True

    def create_batch(self, actor: str, kind: str, source: str, file_name: str, rows: Sequence[dict],
                     job_id: Optional[int] = None, results: Optional[list] = None,
                     pseudonyms: Mapping[str, str] = {}) -> int:
        now = self.clock()
        with self.database.transaction() as db:
            batch_id = db.execute("INSERT INTO batches (created_at, created_by, kind, source, file_name, job_id, rows,"
                                  " results) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                  (now, actor, kind, source, file_name, job_id, json.dumps(list(rows)),
                                   None if results is None else json.dumps(results))).fetchone()[0]
            if job_id is not None:
                db.executemany("INSERT INTO job_pseudonyms (job_id, patient_id, pseudonym) VALUES (?, ?, ?)"
                               " ON CONFLICT (job_id, patient_id) DO UPDATE SET pseudonym = excluded.pseudonym",
                               [(job_id, p, s) for p, s in pseudonyms.items()])
            write_audit(db, now, [AuditEvent("batch-created", actor=actor, detail={"batch": batch_id, "kind": kind,
                                                                              "rows": len(rows), "job": job_id})])
        return batch_id

    def batch(self, batch_id: int) -> Optional[dict]:
        row = self.database.read().execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        batch = dict(row)
        batch["rows"] = json.loads(batch["rows"])
        batch["results"] = json.loads(batch["results"]) if batch["results"] else None
        return batch

    def pseudonyms(self, job_id: int) -> dict[str, str]:
        return {r[0]: r[1] for r in self.database.read().execute(
            "SELECT patient_id, pseudonym FROM job_pseudonyms WHERE job_id = ?", (job_id,))}

    def tasks_by_target(self, job_id: int) -> dict[tuple[str, str], dict]:
        """Tasks of a job by (StudyInstanceUID, SeriesInstanceUID or "")."""
        return {(r["study_uid"], r["series_uid"] or ""): dict(r) for r in self.database.read().execute(
            "SELECT id, study_uid, series_uid, state, expected, delivered, last_error FROM tasks WHERE job_id = ?",
            (job_id,))}
