"""Transfer jobs (one task per study or series of a job, in the tasks table), their per-patient
pseudonyms from batch files, and the batches themselves (rows and results)."""
from __future__ import annotations

import json
from typing import Mapping, Optional, Sequence

from courier.store.audit import write as write_audit
from courier.store.database import SQLiteDatabase
from courier.store.records import CANCELED, FAILURE, PENDING, RUNNING, STATES, WARNING, AuditEvent, Job, JobTarget


class Jobs:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database, self.clock = database, database.clock

    def create(self, actor: str, source: str, destination: str, profile: Optional[str], urgent: bool,
               targets: Sequence[JobTarget], archive_password: Optional[str] = None,
               trial: Optional[Mapping[str, str]] = None) -> int:
        """A job and one task per study or series."""
        now = self.clock()
        with self.database.transaction() as db:
            job_id = db.execute("INSERT INTO jobs (created_at, created_by, source, destination, profile, urgent,"
                                " archive_password, trial) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                (now, actor, source, destination, profile, int(urgent), archive_password,
                                 json.dumps(trial) if trial else None)).fetchone()[0]
            for t in targets:
                db.execute("INSERT INTO tasks (route, destination, level, resource_id, state, priority, next_attempt_at,"
                           " created_at, updated_at, delete_after, profile, job_id, source, study_uid, series_uid, study_id,"
                           " patient_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (f"job-{job_id}", destination, "Series" if t.series_uid else "Study", t.resource_id, PENDING,
                            100 if urgent else 0, now, now, now, int(not t.present), profile, job_id, source, t.study_uid,
                            t.series_uid, t.study_id, t.patient_id))
            write_audit(db, now, [AuditEvent("job-created", actor=actor, route=f"job-{job_id}", destination=destination,
                                        detail={"job": job_id, "source": source, "tasks": len(targets)})])
        return job_id

    def is_paused(self, job_id: int) -> bool:
        row = self.database.read().execute("SELECT paused FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def archive_password(self, job_id: int) -> Optional[str]:
        row = self.database.read().execute("SELECT archive_password FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    def get(self, job_id: int) -> Optional[Job]:
        """The job with its task counts (never its archive password: that secret stays here)."""
        db = self.database.read()
        row = db.execute("SELECT id, created_at, created_by, source, destination, profile, urgent, paused, canceled,"
                         " trial FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        tasks = {s: 0 for s in STATES}
        for state, count in db.execute("SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state", (job_id,)):
            tasks[state] = count
        totals = db.execute(
            "SELECT CAST(COALESCE(SUM(expected), 0) AS BIGINT), CAST(COALESCE(SUM(delivered), 0) AS BIGINT),"
            " CAST(COALESCE(SUM(bytes), 0) AS BIGINT), MIN(created_at), MAX(finished_at) FROM tasks WHERE job_id = ?",
            (job_id,)).fetchone()
        return Job(row["id"], row["created_at"], row["created_by"], row["source"], row["destination"], row["profile"],
                   bool(row["urgent"]), bool(row["paused"]), bool(row["canceled"]),
                   json.loads(row["trial"]) if row["trial"] else {}, tasks, *totals)

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
            elif action == "retry":
                db.execute("UPDATE jobs SET canceled = 0 WHERE id = ?", (job_id,))
                db.execute("UPDATE tasks SET state = ?, attempts = 0, next_attempt_at = ?, updated_at = ?, finished_at = NULL,"
                           " owner = NULL WHERE job_id = ? AND state IN (?, ?, ?)",
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
