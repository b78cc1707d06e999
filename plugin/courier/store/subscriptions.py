"""Subscriptions: their schedule state, the lease a router holds while it runs one, and what each
transferred per study (subscription_studies), so that a restart, a second router or a rerun never
transfers a study twice, and a study that grew is topped up."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional, Sequence

from courier.store.audit import write as write_audit
from courier.store.database import Database
from courier.store.jobs import insert_job, insert_job_tasks
from courier.store.records import CANCELED, PENDING, RUNNING, AuditEvent, Found, JobTarget, Subscription
from courier.store.routers import lease_free

ACTIVE = (PENDING, RUNNING)


def _due(table: str, now: float) -> tuple[str, tuple]:
    """SQL (and its parameters) true when a run of the subscription row `table` is due: its
    schedule came, or its past goes on and the studies of the last partition are done."""
    return ("(next_run_at <= ? OR (backfill_next IS NOT NULL AND backfill_at <= ? AND NOT EXISTS"
            f" (SELECT 1 FROM tasks t WHERE t.job_id = {table}.job_id AND t.state IN (?, ?))))", (now, now, *ACTIVE))


class Subscriptions:
    def __init__(self, database: Database) -> None:
        self.database, self.clock = database, database.clock

    def create(self, actor: str, name: Optional[str], spec: Mapping[str, Any], start_day: str, past_end: Optional[str],
               backfill_next: Optional[str]) -> int:
        """The subscription and its job (source, destination, profile, trial: the job's)."""
        now = self.clock()
        with self.database.transaction() as db:
            job_id = insert_job(db, now, actor, spec["Source"], spec["Destination"], spec.get("Pseudonymize"),
                                bool(spec.get("Urgent")), None, spec.get("Trial") or None,
                                pause_seconds=float(spec.get("PauseBetweenStudiesSeconds") or 0))
            subscription_id = db.execute(
                "INSERT INTO subscriptions (created_at, created_by, name, job_id, spec, start_day, past_end, backfill_next,"
                " backfill_at, since, next_run_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (now, actor, name, job_id, json.dumps(dict(spec)), start_day, past_end, backfill_next,
                 now if backfill_next else None, start_day, now)).fetchone()[0]
            db.execute("UPDATE jobs SET subscription_id = ? WHERE id = ?", (subscription_id, job_id))
            write_audit(db, now, [AuditEvent("subscription-created", actor=actor, destination=spec["Destination"],
                                             route=f"job-{job_id}",
                                             detail={"subscription": subscription_id, "source": spec["Source"]})])
        return subscription_id

    def get(self, subscription_id: int) -> Optional[Subscription]:
        row = self.database.read().execute(f"SELECT {', '.join(Subscription.COLUMNS)} FROM subscriptions WHERE id = ?",
                                           (subscription_id,)).fetchone()
        return None if row is None else _subscription(row)

    def list(self) -> list[Subscription]:
        return [_subscription(r) for r in self.database.read().execute(
            f"SELECT {', '.join(Subscription.COLUMNS)} FROM subscriptions ORDER BY id").fetchall()]

    def counts(self, subscription_id: int) -> dict[str, int]:
        """Studies transferred (recorded), top-ups, and the job's tasks that failed."""
        db = self.database.read()
        studies, times = db.execute("SELECT COUNT(*), COALESCE(SUM(times), 0) FROM subscription_studies"
                                    " WHERE subscription_id = ?", (subscription_id,)).fetchone()
        failed = db.execute("SELECT COUNT(*) FROM tasks WHERE job_id = (SELECT job_id FROM subscriptions WHERE id = ?)"
                            " AND state IN ('FAILURE', 'WARNING')", (subscription_id,)).fetchone()[0]
        return {"Studies": studies, "TopUps": int(times) - studies, "FailedTasks": failed}

    def studies(self, subscription_id: int, limit: int = 100, offset: int = 0) -> tuple[int, list[dict]]:
        """What the subscription transferred, per study, newest first (no patient identifiers)."""
        db = self.database.read()
        total = db.execute("SELECT COUNT(*) FROM subscription_studies WHERE subscription_id = ?",
                           (subscription_id,)).fetchone()[0]
        rows = db.execute("SELECT s.study_uid, s.study_date, s.instances, s.times, s.first_at, s.at, s.task_id, t.state"
                          " FROM subscription_studies s LEFT JOIN tasks t ON t.id = s.task_id WHERE s.subscription_id = ?"
                          " ORDER BY s.at DESC, s.study_uid LIMIT ? OFFSET ?", (subscription_id, limit, offset)).fetchall()
        return total, [{"StudyInstanceUID": r[0], "StudyDate": r[1], "Instances": r[2], "Transfers": r[3],
                        "FirstAt": r[4], "At": r[5], "Task": r[6], "TaskState": r[7]} for r in rows]

    def due(self, stale_after: Optional[float] = None) -> list[int]:
        """Subscriptions a run is due for: their schedule came, or their past goes on and the studies
        of the last partition are done (so a subscription never floods its source); not leased, or
        leased by a router that is gone (`stale_after`: the heartbeat timeout, routers.lease_free)."""
        now = self.clock()
        free, params = lease_free("s", now, stale_after)
        due, due_params = _due("s", now)
        return [r[0] for r in self.database.read().execute(
            f"SELECT id FROM subscriptions s WHERE paused = 0 AND {free} AND {due} ORDER BY id",
            (*params, *due_params)).fetchall()]

    def take(self, subscription_id: int, owner: str, lease_seconds: float,
             stale_after: Optional[float] = None, if_due: bool = False) -> Optional[Subscription]:
        """The subscription, leased to `owner` for its run; None if another live router holds it,
        or, `if_due`, if it is no longer due (another router ran it between this one's due() and
        now: its next run moved on)."""
        now = self.clock()
        free, params = lease_free("subscriptions", now, stale_after)
        due, due_params = _due("subscriptions", now) if if_due else ("1 = 1", ())
        with self.database.transaction() as db:
            row = db.execute(f"UPDATE subscriptions SET lease_owner = ?, lease_until = ? WHERE id = ? AND paused = 0"
                             f" AND {free} AND {due} RETURNING {', '.join(Subscription.COLUMNS)}",
                             (owner, now + lease_seconds, subscription_id, *params, *due_params)).fetchone()
        return None if row is None else _subscription(row)

    def release_leases(self, owner_prefix: str) -> None:
        """At start-up: leases this router's previous run left behind (kill -9) are free again."""
        with self.database.transaction() as db:
            db.execute("UPDATE subscriptions SET lease_owner = NULL, lease_until = NULL WHERE lease_owner LIKE ?",
                       (owner_prefix + "%",))

    def busy_job(self, job_id: int) -> bool:
        return self.database.read().execute("SELECT 1 FROM tasks WHERE job_id = ? AND state IN (?, ?) LIMIT 1",
                                            (job_id, *ACTIVE)).fetchone() is not None

    def known(self, subscription_id: int, found: Sequence[Found]) -> list[Found]:
        """`found` with what the subscription already transferred of each study."""
        if not found:
            return []
        db = self.database.read()
        records = {}
        for start in range(0, len(found), 500):
            chunk = [f.study_uid for f in found[start:start + 500]]
            records.update({r["study_uid"]: r for r in db.execute(
                "SELECT s.study_uid, s.instances, t.state FROM subscription_studies s LEFT JOIN tasks t ON t.id = s.task_id"
                f" WHERE s.subscription_id = ? AND s.study_uid IN ({', '.join('?' * len(chunk))})",
                (subscription_id, *chunk)).fetchall()})
        return [dataclasses.replace(f, known=records[f.study_uid]["instances"] if f.study_uid in records else None,
                                    busy=f.study_uid in records and records[f.study_uid]["state"] in ACTIVE)
                for f in found]

    def record_run(self, subscription: Subscription, owner: str, chosen: Sequence[tuple[Found, JobTarget]],
                   state: Mapping[str, Any], summary: Mapping[str, Any]) -> int:
        """One run's outcome in one transaction: a task per chosen study (new, or grown since its last
        transfer: the task then delivers the new instances only), each recorded per study, and the
        subscription's new schedule state; the lease is dropped. A study another router recorded
        meanwhile is skipped. Returns the number of tasks made."""
        now = self.clock()
        spec = subscription.spec
        spacing = float(spec.get("PauseBetweenStudiesSeconds") or 0)
        made = 0
        with self.database.transaction() as db:
            held = db.execute(f"SELECT lease_owner FROM subscriptions WHERE id = ?{self.database.FOR_UPDATE}",
                              (subscription.id,)).fetchone()
            if held is None or held[0] != owner:
                return 0                                     # lease lost (deleted, or taken after expiry)
            for found, target in chosen:
                if found.known is None:
                    fresh = db.execute("INSERT INTO subscription_studies (subscription_id, study_uid, patient_id, study_date,"
                                       " instances, first_at, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                                       " ON CONFLICT (subscription_id, study_uid) DO NOTHING RETURNING study_uid",
                                       (subscription.id, found.study_uid, found.patient_id, found.study_date,
                                        found.instances, now, now)).fetchone()
                else:
                    fresh = db.execute("UPDATE subscription_studies SET instances = ?, at = ?, times = times + 1"
                                       " WHERE subscription_id = ? AND study_uid = ? AND instances = ? RETURNING study_uid",
                                       (found.instances, now, subscription.id, found.study_uid, found.known)).fetchone()
                if fresh is None:
                    continue
                (task_id,) = insert_job_tasks(db, now, subscription.job_id, spec["Destination"], spec.get("Pseudonymize"),
                                              bool(spec.get("Urgent")), [target], spacing, first=made)
                db.execute("UPDATE subscription_studies SET task_id = ? WHERE subscription_id = ? AND study_uid = ?",
                           (task_id, subscription.id, found.study_uid))
                made += 1
            sets = ", ".join(f"{column} = ?" for column in state)
            db.execute(f"UPDATE subscriptions SET {sets}{', ' if sets else ''}lease_owner = NULL, lease_until = NULL,"
                       " last_run_at = ?, last_error = NULL, runs = runs + 1, last_run = ? WHERE id = ? AND lease_owner = ?",
                       (*state.values(), now, json.dumps({**summary, "Tasks": made}), subscription.id, owner))
            if made:
                write_audit(db, now, [AuditEvent("subscription-run", route=f"job-{subscription.job_id}",
                                                 destination=spec["Destination"],
                                                 detail={"subscription": subscription.id, "tasks": made})])
        return made

    def failed_run(self, subscription: Subscription, owner: str, error: str, retry_in: float) -> None:
        """A run that could not ask its source: the error is shown, the run is tried again later."""
        now = self.clock()
        with self.database.transaction() as db:
            db.execute("UPDATE subscriptions SET lease_owner = NULL, lease_until = NULL, last_run_at = ?, last_error = ?,"
                       " next_run_at = CASE WHEN next_run_at < ? THEN ? ELSE next_run_at END,"
                       " backfill_at = CASE WHEN backfill_next IS NULL THEN NULL ELSE ? END"
                       " WHERE id = ? AND lease_owner = ?",
                       (now, error[:500], now + retry_in, now + retry_in, now + retry_in, subscription.id, owner))

    def postpone(self, subscription: Subscription, owner: str, until: float) -> None:
        """Not now (the source is outside its windows): look again at `until`; the lease is dropped."""
        with self.database.transaction() as db:
            db.execute("UPDATE subscriptions SET lease_owner = NULL, lease_until = NULL,"
                       " next_run_at = CASE WHEN next_run_at IS NULL THEN NULL WHEN next_run_at < ? THEN ? ELSE next_run_at END,"
                       " backfill_at = CASE WHEN backfill_next IS NULL THEN NULL ELSE ? END WHERE id = ? AND lease_owner = ?",
                       (until, until, until, subscription.id, owner))

    def update(self, subscription_id: int, spec: Mapping[str, Any], actor: str, changed: Sequence[str]) -> None:
        """A new spec (its schedule, limits, query or match); the next run is due at once."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("UPDATE subscriptions SET spec = ?, name = ?, next_run_at = CASE WHEN next_run_at IS NULL"
                             " THEN NULL ELSE ? END WHERE id = ? RETURNING job_id",
                             (json.dumps(dict(spec)), spec.get("Name"), now, subscription_id)).fetchone()
            db.execute("UPDATE jobs SET pause_seconds = ? WHERE id = ?",
                       (float(spec.get("PauseBetweenStudiesSeconds") or 0), row[0]))
            write_audit(db, now, [AuditEvent("subscription-edited", actor=actor, route=f"job-{row[0]}",
                                             detail={"subscription": subscription_id, "changed": list(changed)})])

    def control(self, subscription_id: int, action: str, actor: str) -> bool:
        """pause | resume | delete (its pending tasks are cancelled; its job and the audit stay)."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT job_id FROM subscriptions WHERE id = ?", (subscription_id,)).fetchone()
            if row is None:
                return False
            job_id = row[0]
            if action in ("pause", "resume"):
                db.execute("UPDATE subscriptions SET paused = ? WHERE id = ?", (int(action == "pause"), subscription_id))
                db.execute("UPDATE jobs SET paused = ? WHERE id = ?", (int(action == "pause"), job_id))
                if action == "resume":
                    db.execute("UPDATE subscriptions SET next_run_at = ? WHERE id = ? AND next_run_at IS NOT NULL"
                               " AND next_run_at > ?", (now, subscription_id, now))
            elif action == "delete":
                db.execute("UPDATE tasks SET state = ?, updated_at = ?, finished_at = ? WHERE job_id = ? AND state = ?",
                           (CANCELED, now, now, job_id, PENDING))
                db.execute("UPDATE jobs SET canceled = 1, subscription_id = NULL WHERE id = ?", (job_id,))
                db.execute("DELETE FROM subscription_studies WHERE subscription_id = ?", (subscription_id,))
                db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
            write_audit(db, now, [AuditEvent(f"subscription-{action}", actor=actor, route=f"job-{job_id}",
                                             detail={"subscription": subscription_id})])
        return True


def _subscription(row: Any) -> Subscription:
    values = {name: row[name] for name in Subscription.COLUMNS}
    values["spec"] = json.loads(values["spec"])
    values["paused"] = bool(values["paused"])
    values["last_run"] = json.loads(values["last_run"]) if values["last_run"] else None
    return Subscription(**values)
