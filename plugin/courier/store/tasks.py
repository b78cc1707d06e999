"""The tasks table and each task's manifest (task_instances), the change cursor, per-destination
counters: what workers claim, heartbeat and finish, and what the REST API lists.

A claim is one UPDATE ... WHERE id IN (SELECT ...) so that two workers never take the same task.
New tasks, their audit lines and the change-log cursor commit in one transaction: a change is
routed exactly once, whatever stops the router.
"""
from __future__ import annotations

import sqlite3
from typing import Any, Mapping, Optional, Sequence

from courier.store.arrivals import record_arrivals
from courier.store.audit import write as write_audit
from courier.store.database import SQLiteDatabase
from courier.store.records import (
    CANCELED,
    FAILURE,
    FINAL_STATES,
    OUTCOME_ACTIONS,
    PENDING,
    RUNNING,
    STATES,
    SUCCESS,
    WARNING,
    Arrival,
    Attempt,
    AuditEvent,
    Claim,
    ManifestItem,
    NewTask,
    Task,
    TrafficEvent,
)
from courier.store.traffic import write as write_traffic

COLUMNS = ", ".join(Task.COLUMNS)


def insert_tasks(db: sqlite3.Connection, now: float, tasks: Sequence[NewTask]) -> list[int]:
    """Insert PENDING tasks, their manifests when known and their "task-created" audit lines inside
    the caller's transaction: INSERT_CHUNK tasks a statement. A statement's new ids ascend in the
    order of its VALUES rows (SQLite's rowids and PostgreSQL's sequence are both given row by row,
    in that order), whatever order RETURNING lists them in."""
    tasks, ids = list(tasks), []
    for chunk in _chunks(tasks, INSERT_CHUNK):
        rows = db.execute(
            "INSERT INTO tasks (route, destination, level, resource_id, state, priority, next_attempt_at,"
            " created_at, updated_at, delete_after, profile, job_id, source, study_uid, reviewed, expected)"
            f" VALUES {', '.join(['(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'] * len(chunk))} RETURNING id",
            [value for t in chunk for value in (
                t.route, t.destination, t.level, t.resource_id, PENDING, t.priority, now, now, now,
                int(t.delete_after), t.profile, t.job_id, t.source, t.study_uid, int(t.reviewed),
                len(t.manifest) or None)]).fetchall()
        ids += sorted(int(row[0]) for row in rows)
    known = [(i, item.instance_id, item.sop_instance_uid, item.size)
             for t, i in zip(tasks, ids, strict=True) for item in t.manifest]
    if known:
        db.executemany("INSERT INTO task_instances (task_id, instance_id, sop_instance_uid, size) VALUES (?, ?, ?, ?)",
                       known)
    write_audit(db, now, [AuditEvent("task-created", route=t.route, destination=t.destination,
                                     resource_id=t.resource_id, task_id=i) for t, i in zip(tasks, ids, strict=True)])
    return ids


BULK_FROM = {"retry": (FAILURE, WARNING, CANCELED), "cancel": (PENDING, RUNNING), "priority": (PENDING, RUNNING)}


def _where(state: Optional[str], route: Optional[str], destination: Optional[str], job_id: Optional[int],
           since: Optional[float], until: Optional[float]) -> tuple[str, list]:
    """The WHERE clause of a task filter (created between since and until, Unix time)."""
    where, args = [], []
    for column, op, value in (("state", "=", state), ("route", "=", route), ("destination", "=", destination),
                              ("job_id", "=", job_id), ("created_at", ">=", since), ("created_at", "<", until)):
        if value is not None:
            where.append(f"{column} {op} ?")
            args.append(value)
    return (f" WHERE {' AND '.join(where)}" if where else ""), args



def _known_filter(known: Optional[Mapping[str, Sequence[str]]]) -> tuple[str, list]:
    """SQL (and its values) keeping the tasks whose destination, source and profile are among the
    configuration's (`known`; None: any)."""
    clause, values = "", []
    for column, names in (known or {}).items():
        assert column in ("destination", "source", "profile", "route"), column
        inside = f"{column} IN ({', '.join('?' * len(names))})" if names else "0 = 1"
        if column == "destination":
            clause += f" AND ({inside})"
        elif column == "route":     # a routed task's route (its Modify); manual:, release:, import:, upload: are not routes
            clause += f" AND (job_id IS NOT NULL OR route LIKE '%:%' OR {inside})"
        else:
            clause += f" AND ({column} IS NULL OR {inside})"
        values += list(names)
    return clause, values


INSERT_CHUNK = 500    # tasks in one INSERT: 16 parameters each
PAIR_CHUNK = 1000     # (task, instance) pairs in one lookup: two parameters each
ID_CHUNK = 500        # ids in one IN (...) list: far under SQLite's 32766 and PostgreSQL's 65535 parameters


def _chunks(values: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def _totals(db: Any, task_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Task id -> (instances delivered, their bytes), from its manifest."""
    totals: dict[int, tuple[int, int]] = {}
    for chunk in _chunks(task_ids, ID_CHUNK):
        totals.update((r[0], (int(r[1]), int(r[2]))) for r in db.execute(
            "SELECT task_id, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM task_instances"
            f" WHERE task_id IN ({', '.join('?' * len(chunk))}) AND delivered = 1 GROUP BY task_id", chunk))
    return totals


def _sizes_of(db: Any, delivered: Mapping[int, Sequence[str]]) -> dict[int, int]:
    """Task id -> the bytes of the manifest entries named in `delivered[task id]` (each entry once):
    one lookup of the primary key per entry, PAIR_CHUNK entries a statement."""
    pairs = list(dict.fromkeys((task_id, i) for task_id, done in delivered.items() for i in done))
    sizes: dict[int, int] = {}
    for chunk in _chunks(pairs, PAIR_CHUNK):
        for task_id, size in db.execute(
                f"SELECT t.task_id, t.size FROM (VALUES {', '.join(['(?, ?)'] * len(chunk))}) AS v"   # a join, not
                " JOIN task_instances AS t ON t.task_id = v.column1 AND t.instance_id = v.column2",  # IN: SQLite scans for that
                [value for pair in chunk for value in pair]):
            sizes[task_id] = sizes.get(task_id, 0) + int(size or 0)
    return sizes


def _not_in(column: str, names: Sequence[str]) -> str:
    return f" AND {column} NOT IN ({', '.join('?' * len(names))})" if names else ""


class Tasks:
    def __init__(self, database: SQLiteDatabase) -> None:
        self.database, self.clock = database, database.clock

    def cursor(self, name: str) -> Optional[int]:
        row = self.database.read().execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def enqueue(self, tasks: Sequence[NewTask], audit: Sequence[AuditEvent] = (),
                cursor: Optional[tuple[str, int]] = None, arrivals: Sequence[Arrival] = (),
                expect: Optional[int] = None, received: int = 0,
                traffic: Sequence[TrafficEvent] = ()) -> Optional[list[int]]:
        """Persist new tasks, their audit lines, the arrivals, the C-STOREs of the traffic log and the
        change cursor in one transaction (and `received` more instances in this hour's count). With
        `expect`, only if the cursor still is at that value (its row locked meanwhile): another
        router that followed the same changes first makes this return None, writing nothing."""
        now = self.clock()
        with self.database.transaction() as db:
            if cursor is not None and expect is not None:
                row = db.execute(f"SELECT value FROM cursors WHERE name = ?{self.database.FOR_UPDATE}",
                                 (cursor[0],)).fetchone()
                if (row[0] if row else 0) != expect:
                    return None
            ids = insert_tasks(db, now, tasks)
            write_audit(db, now, audit)
            record_arrivals(db, now, arrivals)
            write_traffic(db, self.database, traffic)
            if cursor is not None:
                db.execute("INSERT INTO cursors (name, value) VALUES (?, ?) ON CONFLICT(name)"
                           " DO UPDATE SET value = excluded.value", cursor)
            if received:
                db.execute("INSERT INTO stats_hourly (hour, name, value) VALUES (?, 'received', ?) ON CONFLICT (hour, name)"
                           " DO UPDATE SET value = stats_hourly.value + excluded.value", (int(now // 3600), received))
        return ids

    def claim(self, owner: str, limit: int, max_workers_per_destination: int = 10**6,
              closed_sources: Sequence[str] = (), source_limits: Mapping[str, int] = {},
              stale_after: float = 60.0, held_destinations: Sequence[str] = (),
              known: Optional[Mapping[str, Sequence[str]]] = None) -> Optional[Claim]:
        """Atomically take due tasks, the most urgent first, and say which destination they are for.

        - Routed tasks come up to `limit` at a time, for one destination (many small instances share
          one association). A job task comes alone, so that a cancel, a pause or an urgent job acts
          before its next study.
        - Sending (routed tasks, and job tasks fetched: phase 'send') needs a slot of the destination:
          fewer than `max_workers_per_destination` workers busy with it (workers still blocked in a
          send count, whatever became of their task). The slot is held for `owner` until
          `release_slot`.
        - Fetching a job task (phase 'fetch') needs no slot of the destination, so the next study is
          fetched while the last one is sent. It needs its source: inside its windows and fetching
          fewer studies than its MaxParallelTasks (`source_limits`). And it runs ahead by at most
          `max_workers_per_destination` studies being fetched or fetched and waiting for the
          destination (those of paused jobs, or naming what the configuration lost, not counted),
          so that a slow destination never has everything fetched for it. A direct move is a fetch:
          it needs the source only.
        - A held (disabled) destination lends nothing.
        - `known` ({"destination": [...], "source": [...], "profile": [...], "route": [...]}, the
          configuration's): tasks naming anything else wait, PENDING, for a configuration that has
          it again (a routed task of a route gone would be sent without that route's Modify)."""
        now = self.clock()
        if not self._may_claim(owner, now):
            return None
        with self.database.transaction() as db:
            self.database.lock(db, "claims")        # counting a destination's slots and taking one: one step
            db.execute("DELETE FROM worker_slots WHERE owner = ?", (owner,))
            busy = [r[0] for r in db.execute(
                "SELECT destination FROM worker_slots WHERE heartbeat_at >= ? GROUP BY destination HAVING COUNT(*) >= ?",
                (now - stale_after, max_workers_per_destination))] + list(held_destinations)
            fetching = dict(db.execute(
                "SELECT source, COUNT(*) FROM tasks WHERE state = ? AND source IS NOT NULL AND COALESCE(phase, 'fetch') = 'fetch'"
                " GROUP BY source", (RUNNING,)).fetchall())
            held = list(closed_sources) + [s for s, n in fetching.items() if n >= source_limits.get(s, 10**6)]
            clause, known_values = _known_filter(known)
            ahead = [r[0] for r in db.execute(        # fetched and waiting (jobs not paused), or being fetched
                "SELECT destination FROM tasks WHERE ((phase = 'send' AND state = ?"
                f" AND job_id NOT IN (SELECT id FROM jobs WHERE paused = 1){clause}) OR (phase = 'fetch' AND state = ?))"
                " GROUP BY destination HAVING COUNT(*) >= ?",
                (PENDING, *known_values, RUNNING, max_workers_per_destination))] + list(held_destinations)
            sending = "(source IS NULL OR phase = 'send')" + _not_in("destination", busy)
            fetch = "(source IS NOT NULL AND COALESCE(phase, 'fetch') <> 'send')" + _not_in("source", held) \
                + _not_in("destination", ahead)
            where = (" state = ? AND next_attempt_at <= ?"
                     " AND (job_id IS NULL OR job_id NOT IN (SELECT id FROM jobs WHERE paused = 1))"
                     f" AND (({sending}) OR ({fetch})){clause}")
            values: list = [PENDING, now, *busy, *held, *ahead, *known_values]
            destinations = (known or {}).get("destination")
            if busy and destinations is not None:
                head = self._head_by_destination(db, where, values, destinations, set(busy), set(ahead))
            else:                             # nothing to skip past: the first due task in order qualifies
                head = db.execute(f"SELECT id, destination, source, phase FROM tasks WHERE{where}"
                                  f" ORDER BY priority DESC, next_attempt_at, id LIMIT 1{self.database.SKIP_LOCKED}",
                                  values).fetchone()
            if head is None:
                return None
            take = "UPDATE tasks SET state = ?, owner = ?, heartbeat_at = ?, updated_at = ?, phase = ?"
            sends = head["source"] is None or head["phase"] == "send"
            if head["source"] is not None:
                rows = db.execute(f"{take} WHERE id = ? RETURNING {COLUMNS}",
                                  (RUNNING, owner, now, now, "send" if sends else "fetch", head["id"])).fetchall()
            else:
                rows = self._take_routed(db, owner, head["destination"], limit, now, known)
            if sends:
                db.execute("INSERT INTO worker_slots (owner, destination, since, heartbeat_at) VALUES (?, ?, ?, ?)",
                           (owner, head["destination"], now, now))
        tasks = sorted((Task.from_row(r) for r in rows), key=lambda t: (-t.priority, t.id))
        return Claim(owner, head["destination"], tuple(tasks))

    def _head_by_destination(self, db: Any, where: str, values: list, destinations: Sequence[str], busy: set,
                             ahead: set) -> Any:
        """The claim's head (the most urgent task that may be claimed) while some destinations are
        at their MaxWorkersPerDestination: one seek per configured destination, the best of them,
        where one query in order would scan every due task of the busy ones (37 ms with a backlog of
        100,000 on SQLite, holding the write lock), in one statement. A busy destination can only
        lend a job task's fetch (a partial index of those), one also fetching far enough ahead
        nothing at all. On PostgreSQL each probe locks its row until the claim commits: a top-up
        (claim_more) meanwhile skips it, and takes the next."""
        probes, params = [], []
        for destination in dict.fromkeys(destinations):
            if destination in busy and destination in ahead:
                continue
            jobs = destination in busy
            index = self.database.indexed_by("tasks_pending_jobs" if jobs else "tasks_pending_by_destination")
            probes.append(
                f"SELECT * FROM (SELECT id, destination, source, phase, priority, next_attempt_at FROM tasks{index}"
                f" WHERE state = 'PENDING' AND destination = ?{' AND source IS NOT NULL' if jobs else ''} AND{where}"
                f" ORDER BY priority DESC, next_attempt_at, id LIMIT 1{self.database.SKIP_LOCKED}) AS probe{len(probes)}")
            params += [destination, *values]
        heads = db.execute(" UNION ALL ".join(probes), params).fetchall() if probes else []   # one round trip
        return min(heads, key=lambda r: (-r["priority"], r["next_attempt_at"], r["id"]), default=None)

    def _may_claim(self, owner: str, now: float) -> bool:
        """Something due, or a slot of `owner` to drop: all a claim could change. A read, not a
        write transaction: most claims of a burst find nothing (about three for each that takes a
        batch: the worker woken by a claim, the claimer's next look), and measured on SQLite this
        costs 0.005 ms of CPU against 0.25 ms, with no writer waiting behind it. A task enqueued
        just after it wakes a worker, as it would after a claim that found nothing."""
        row = self.database.read().execute(
            f"SELECT EXISTS (SELECT 1 FROM tasks{self.database.indexed_by('tasks_next_due')} WHERE state = 'PENDING'"
            " AND next_attempt_at <= ?) OR EXISTS (SELECT 1 FROM worker_slots WHERE owner = ?)", (now, owner)).fetchone()
        return bool(row[0])

    def _take_routed(self, db: Any, owner: str, destination: str, limit: int, now: float,
                     known: Optional[Mapping[str, Sequence[str]]] = None) -> list:
        clause, values = _known_filter(known)
        return db.execute(
            f"UPDATE tasks SET state = ?, owner = ?, heartbeat_at = ?, updated_at = ?, phase = ?"
            f" WHERE id IN (SELECT id FROM tasks WHERE state = ? AND next_attempt_at <= ? AND destination = ?"
            f"  AND source IS NULL{clause} ORDER BY priority DESC, next_attempt_at, id LIMIT ?{self.database.SKIP_LOCKED})"
            f" RETURNING {COLUMNS}",
            (RUNNING, owner, now, now, None, PENDING, now, destination, *values, limit)).fetchall()

    def claim_more(self, owner: str, destination: str, limit: int,
                   known: Optional[Mapping[str, Sequence[str]]] = None) -> list[Task]:
        """More due routed tasks of the destination `owner` already holds a slot of (a short batch
        topped up after BatchLingerSeconds)."""
        if limit <= 0:
            return []
        with self.database.transaction() as db:
            rows = self._take_routed(db, owner, destination, limit, self.clock(), known)
        return sorted((Task.from_row(r) for r in rows), key=lambda t: (-t.priority, t.id))

    def release_slot(self, owner: str) -> None:
        """The worker is no longer busy with its destination (its send returned)."""
        with self.database.transaction() as db:
            db.execute("DELETE FROM worker_slots WHERE owner = ?", (owner,))

    def busy_slots(self) -> dict[str, int]:
        """Destination -> workers busy with it now."""
        return dict(self.database.read().execute(
            "SELECT destination, COUNT(*) FROM worker_slots GROUP BY destination").fetchall())

    def fetched(self, owner: str, task_id: int) -> bool:
        """A job task's study is in Courier's Orthanc and its manifest recorded: it waits, PENDING in
        phase 'send', for a slot of its destination (not an attempt; its place in the queue kept), and
        the worker is free to fetch the next study. False if it was cancelled or taken meanwhile."""
        with self.database.transaction() as db:
            return db.execute("UPDATE tasks SET state = ?, owner = NULL, phase = 'send', updated_at = ?"
                              " WHERE id = ? AND state = ? AND owner = ?",
                              (PENDING, self.clock(), task_id, RUNNING, owner)).rowcount == 1

    def cancelled_fetched(self, limit: int = 100) -> list[Task]:
        """Job tasks cancelled after their study was fetched (or while it was being sent): its copy,
        fetched only for the transfer, is still to be deleted (see `forget_fetched`)."""
        rows = self.database.read().execute(
            f"SELECT {COLUMNS} FROM tasks WHERE phase = 'send' AND state = ? LIMIT ?", (CANCELED, limit)).fetchall()
        return [Task.from_row(r) for r in rows]

    def forget_fetched(self, task_id: int) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE tasks SET phase = NULL WHERE id = ? AND state = ?", (task_id, CANCELED))

    def release(self, owner: str, task_ids: Sequence[int], reason: str) -> int:
        """Put RUNNING tasks of `owner` back to PENDING, due now, without counting an attempt (a job
        paused meanwhile, the router stopping): what they delivered stays delivered, and a job task
        already fetched stays fetched (phase 'send')."""
        now = self.clock()
        with self.database.transaction() as db:
            rows = db.execute(
                f"UPDATE tasks SET state = ?, owner = NULL, next_attempt_at = ?, updated_at = ?,"
                f" phase = CASE WHEN phase = 'send' THEN phase END"
                f" WHERE state = ? AND owner = ? AND id IN ({', '.join('?' * len(task_ids))})"
                f" RETURNING id, route, destination, resource_id",
                (PENDING, now, now, RUNNING, owner, *task_ids)).fetchall() if task_ids else []
            write_audit(db, now, [AuditEvent("task-requeued", route=r[1], destination=r[2], resource_id=r[3], task_id=r[0],
                                             detail={"reason": reason}) for r in rows])
        return len(rows)

    def next_due_in(self) -> Optional[float]:
        index = self.database.indexed_by("tasks_next_due")     # partial: 'PENDING' must be a literal
        row = self.database.read().execute(
            f"SELECT MIN(next_attempt_at) FROM tasks{index} WHERE state = 'PENDING'").fetchone()
        return None if row[0] is None else max(0.0, row[0] - self.clock())

    def manifests(self, task_ids: Sequence[int]) -> dict[int, list[ManifestItem]]:
        found: dict[int, list[ManifestItem]] = {task_id: [] for task_id in task_ids}
        if task_ids:
            rows = self.database.read().execute(
                f"SELECT task_id, instance_id, sop_instance_uid, size, delivered FROM task_instances"
                f" WHERE task_id IN ({', '.join('?' * len(task_ids))}) ORDER BY rowid", tuple(task_ids)).fetchall()
            for r in rows:
                found[r[0]].append(ManifestItem(r[1], r[2], r[3], bool(r[4])))
        return found

    def save_manifests(self, manifests: Mapping[int, Sequence[ManifestItem]]) -> None:
        with self.database.transaction() as db:
            for task_id, items in manifests.items():
                db.executemany("INSERT INTO task_instances (task_id, instance_id, sop_instance_uid, size)"
                               " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                               [(task_id, i.instance_id, i.sop_instance_uid, i.size) for i in items])
                db.execute("UPDATE tasks SET expected = (SELECT COUNT(*) FROM task_instances WHERE task_id = ?)"
                           " WHERE id = ?", (task_id, task_id))

    def replace_manifest(self, task_id: int, items: Sequence[ManifestItem]) -> None:
        """A job task's manifest after a fetch: rows not yet delivered are replaced."""
        with self.database.transaction() as db:
            delivered = {r[0] for r in db.execute(
                "SELECT sop_instance_uid FROM task_instances WHERE task_id = ? AND delivered = 1", (task_id,))}
            db.execute("DELETE FROM task_instances WHERE task_id = ? AND delivered = 0", (task_id,))
            db.executemany("INSERT INTO task_instances (task_id, instance_id, sop_instance_uid, size)"
                           " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", [(task_id, i.instance_id, i.sop_instance_uid, i.size)
                                                    for i in items if i.sop_instance_uid not in delivered])
            db.execute("UPDATE tasks SET expected = (SELECT COUNT(*) FROM task_instances WHERE task_id = ?)"
                       " WHERE id = ?", (task_id, task_id))

    def progress(self, owner: str, delivered: Mapping[int, Sequence[str]]) -> None:
        """Instances acknowledged during an attempt (counted at once, so a job's progress moves per
        instance); tasks no longer RUNNING for `owner` are left alone. The attempt's outcome, the
        counters and the audit line come with finish_attempts."""
        with self.database.transaction() as db:
            for task_id, ids in delivered.items():
                if db.execute("SELECT 1 FROM tasks WHERE id = ? AND state = ? AND owner = ?",
                              (task_id, RUNNING, owner)).fetchone() is None:
                    continue
                db.executemany("UPDATE task_instances SET delivered = 1 WHERE task_id = ? AND instance_id = ?",
                               [(task_id, i) for i in ids])
                db.execute("UPDATE tasks SET"
                           " delivered = (SELECT COUNT(*) FROM task_instances WHERE task_id = ? AND delivered = 1),"
                           " bytes = (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM task_instances"
                           "  WHERE task_id = ? AND delivered = 1)"
                           " WHERE id = ?", (task_id, task_id, task_id))

    def finish_attempts(self, owner: str, attempts: Sequence[Attempt], release_slot: bool = False) -> list[int]:
        """Record the result of one attempt of each task, in one transaction (with `release_slot`,
        `owner`'s destination slot is released in it too). Returns the ids recorded; a task
        cancelled (or taken by another worker) meanwhile is left as it is.

        Set-wise: a batch of N tasks is a handful of statements (the tasks' states, the
        instances delivered, their totals, the tasks updated, one counter row per destination, the
        audit lines), not seven per task: on PostgreSQL each statement is a round trip."""
        now = self.clock()
        with self.database.transaction() as db:
            ids = list(dict.fromkeys(a.task.id for a in attempts))
            current = {}
            for chunk in _chunks(ids, ID_CHUNK):
                current.update((r[0], (r[1], r[2])) for r in db.execute(     # locked until the commit
                    f"SELECT id, state, owner FROM tasks WHERE id IN ({', '.join('?' * len(chunk))}) ORDER BY id"
                    f"{self.database.FOR_UPDATE}", chunk))
            mine: list[Attempt] = []
            for a in attempts:                # a task's first attempt only: the next would find it finished
                if current.pop(a.task.id, None) == (RUNNING, owner):
                    mine.append(a)
            delivered = {a.task.id: list(a.delivered_ids) for a in mine}
            db.executemany("UPDATE task_instances SET delivered = 1 WHERE task_id = ? AND instance_id = ?",
                           [(task_id, i) for task_id, done in delivered.items() for i in done])
            totals = _totals(db, list(delivered))
            fresh = _sizes_of(db, delivered)
            db.executemany(
                "UPDATE tasks SET state = ?, attempts = attempts + ?, delivered = ?, bytes = ?, last_error = ?,"
                " next_attempt_at = ?, updated_at = ?, finished_at = ?,"
                " phase = CASE WHEN ? = 1 AND phase = 'send' THEN phase END,"   # paused or stopped: still fetched
                " owner = CASE WHEN ? = 'PENDING' THEN NULL ELSE owner END WHERE id = ?",
                [(a.state, 0 if a.interrupted else 1, *totals.get(a.task.id, (0, 0)), a.error, now + (a.retry_in or 0),
                  now, now if a.state in FINAL_STATES else None, int(a.interrupted), a.state, a.task.id) for a in mine])
            counters: dict[str, list[int]] = {}
            for a in mine:
                counter = counters.setdefault(a.task.destination, [0, 0, 0])
                counter[0] += len(delivered[a.task.id])
                counter[1] += a.failed
                counter[2] += fresh.get(a.task.id, 0)
            db.executemany("INSERT INTO destination_stats (destination, delivered_instances, failed_instances,"
                           " delivered_bytes) VALUES (?, ?, ?, ?) ON CONFLICT(destination) DO UPDATE SET"
                           " delivered_instances = destination_stats.delivered_instances + excluded.delivered_instances,"
                           " failed_instances = destination_stats.failed_instances + excluded.failed_instances,"
                           " delivered_bytes = destination_stats.delivered_bytes + excluded.delivered_bytes",
                           [(destination, *counter) for destination, counter in sorted(counters.items())])
            events = []
            for a in mine:
                task = a.task
                detail = {"attempt": task.attempts + (0 if a.interrupted else 1),
                          "delivered": totals.get(task.id, (0, 0))[0], "expected": a.expected}
                if a.error:
                    detail["error"] = a.error
                action = "task-requeued" if a.interrupted else OUTCOME_ACTIONS[a.state]
                events.append(AuditEvent(action, route=task.route, destination=task.destination,
                                         resource_id=task.resource_id, task_id=task.id, detail=detail))
            write_audit(db, now, events)
            if release_slot:        # last: tasks first, then slots, the order of heartbeat (no deadlock)
                db.execute("DELETE FROM worker_slots WHERE owner = ?", (owner,))
        return [a.task.id for a in mine]

    def heartbeat(self, owner: str) -> None:
        now = self.clock()
        with self.database.transaction() as db:
            db.execute("UPDATE tasks SET heartbeat_at = ? WHERE state = ? AND owner = ?", (now, RUNNING, owner))
            db.execute("UPDATE worker_slots SET heartbeat_at = ? WHERE owner = ?", (now, owner))

    def requeue_abandoned(self, node_prefix: Optional[str], stale_after: float, reason: str = "worker gone") -> int:
        """RUNNING tasks (and worker slots) of a dead incarnation of this node (owner starting with
        `node_prefix`, if given), or with a lost heartbeat, go back to PENDING (are freed)."""
        now = self.clock()
        mine = "owner LIKE ? OR " if node_prefix is not None else ""
        prefix = (node_prefix + "%",) if node_prefix is not None else ()
        with self.database.transaction() as db:
            rows = db.execute(
                f"UPDATE tasks SET state = ?, owner = NULL, next_attempt_at = ?, updated_at = ?, phase = NULL"
                f" WHERE state = ? AND ({mine}heartbeat_at < ?) RETURNING id, route, destination, resource_id",
                (PENDING, now, now, RUNNING, *prefix, now - stale_after)).fetchall()
            db.execute(f"DELETE FROM worker_slots WHERE {mine}heartbeat_at < ?", (*prefix, now - stale_after))
            write_audit(db, now, [AuditEvent("task-requeued", route=r[1], destination=r[2], resource_id=r[3],
                                             task_id=r[0], detail={"reason": reason}) for r in rows])
        return len(rows)

    def active_for_resource(self, resource_id: str) -> int:
        row = self.database.read().execute("SELECT COUNT(*) FROM tasks WHERE resource_id = ? AND state IN (?, ?)",
                                 (resource_id, PENDING, RUNNING)).fetchone()
        return row[0]

    def unfinished_for_resource(self, resource_id: str) -> int:
        row = self.database.read().execute("SELECT COUNT(*) FROM tasks WHERE resource_id = ? AND state != ?",
                                 (resource_id, SUCCESS)).fetchone()
        return row[0]

    def due_count(self, destination: str, limit: int, known: Optional[Mapping[str, Sequence[str]]] = None) -> int:
        """How many routed tasks of the destination claim_more would take, up to `limit`: a read."""
        clause, values = _known_filter(known)
        row = self.database.read().execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM tasks WHERE state = ? AND next_attempt_at <= ? AND destination = ?"
            f" AND source IS NULL{clause} LIMIT ?) AS due", (PENDING, self.clock(), destination, *values, limit)).fetchone()
        return int(row[0])

    def running_of(self, owner: str) -> int:
        """How many tasks `owner` still holds RUNNING (0: all were cancelled meanwhile)."""
        return self.database.read().execute("SELECT COUNT(*) FROM tasks WHERE state = ? AND owner = ?",
                                            (RUNNING, owner)).fetchone()[0]

    def held_by(self, owner: str) -> list[Task]:
        """The tasks `owner` holds RUNNING."""
        rows = self.database.read().execute(f"SELECT {COLUMNS} FROM tasks WHERE state = ? AND owner = ? ORDER BY id",
                                            (RUNNING, owner)).fetchall()
        return [Task.from_row(row) for row in rows]

    def state_of(self, task_id: int) -> Optional[str]:
        row = self.database.read().execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else row[0]

    def get(self, task_id: int) -> Optional[Task]:
        row = self.database.read().execute(f"SELECT {COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else Task.from_row(row)

    def delivered_by_job(self, task: Task) -> set[str]:
        """SOP Instance UIDs of the task's study (or series) that other tasks of its job delivered:
        a study a subscription tops up, or an item added twice, is not sent again."""
        if task.job_id is None:
            return set()
        return {r[0] for r in self.database.read().execute(
            "SELECT i.sop_instance_uid FROM task_instances i JOIN tasks t ON t.id = i.task_id WHERE t.job_id = ?"
            " AND t.study_uid = ? AND t.id <> ? AND i.delivered = 1", (task.job_id, task.study_uid, task.id)).fetchall()}

    def missing(self, task_id: int) -> list[str]:
        """SOP Instance UIDs of the task's manifest not delivered yet."""
        return [r[0] for r in self.database.read().execute(
            "SELECT sop_instance_uid FROM task_instances WHERE task_id = ? AND delivered = 0 ORDER BY rowid",
            (task_id,)).fetchall()]

    def list(self, state: Optional[str] = None, route: Optional[str] = None, destination: Optional[str] = None,
             limit: int = 100, offset: int = 0, job_id: Optional[int] = None, since: Optional[float] = None,
             until: Optional[float] = None) -> tuple[int, list[Task]]:
        clause, args = _where(state, route, destination, job_id, since, until)
        total = self.database.read().execute(f"SELECT COUNT(*) FROM tasks{clause}", args).fetchone()[0]
        rows = self.database.read().execute(f"SELECT {COLUMNS} FROM tasks{clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                                            (*args, limit, offset)).fetchall()
        return total, [Task.from_row(r) for r in rows]

    def bulk(self, action: str, actor: str, ids: Optional[Sequence[int]] = None, state: Optional[str] = None,
             route: Optional[str] = None, destination: Optional[str] = None, since: Optional[float] = None,
             until: Optional[float] = None, priority: Optional[int] = None) -> dict:
        """retry | cancel | priority for the tasks `ids`, or for all matching the filter, in one
        transaction, each audited; those in a state the action does not apply to are left alone."""
        allowed = BULK_FROM[action]
        clause, args = _where(state, route, destination, None, since, until)
        clause += (" AND" if clause else " WHERE") + f" state IN ({', '.join('?' * len(allowed))})"
        args += list(allowed)
        if ids is not None:
            clause += f" AND id IN ({', '.join('?' * len(ids))})" if ids else " AND 0 = 1"
            args += list(ids)
        now = self.clock()
        sets = {"retry": ("state = ?, attempts = 0, next_attempt_at = ?, finished_at = NULL, owner = NULL, updated_at = ?,"
                          " phase = NULL",
                          [PENDING, now, now]),
                "cancel": ("state = ?, finished_at = ?, updated_at = ?", [CANCELED, now, now]),
                "priority": ("priority = ?, updated_at = ?", [priority, now])}[action]
        with self.database.transaction() as db:
            rows = db.execute(f"UPDATE tasks SET {sets[0]}{clause} RETURNING id, route, destination, resource_id",
                              (*sets[1], *args)).fetchall()
            write_audit(db, now, [AuditEvent(f"task-bulk-{action}", actor=actor, route=r[1], destination=r[2],
                                             resource_id=r[3], task_id=r[0],
                                             detail={"priority": priority} if action == "priority" else None)
                                  for r in rows])
        return {"Action": action, "Changed": len(rows), "Ids": sorted(r[0] for r in rows)[:1000]}

    def set_state(self, task_id: int, allowed_from: Sequence[str], state: str, actor: str, action: str) -> Optional[str]:
        """Move a task to `state` if it is in one of `allowed_from`; returns its former state or None."""
        now = self.clock()
        with self.database.transaction() as db:
            row = db.execute("SELECT state, route, destination, resource_id FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()
            if row is None or row["state"] not in allowed_from:
                return None if row is None else "!" + row["state"]
            reset = ", attempts = 0, next_attempt_at = ?, finished_at = NULL, owner = NULL, phase = NULL" \
                if state == PENDING \
                else ", finished_at = ?"
            db.execute(f"UPDATE tasks SET state = ?, updated_at = ?{reset} WHERE id = ?", (state, now, now, task_id))
            write_audit(db, now, [AuditEvent(action, actor=actor, route=row["route"], destination=row["destination"],
                                        resource_id=row["resource_id"], task_id=task_id,
                                        detail={"from": row["state"]})])
        return row["state"]

    def failing_destinations(self, since: float) -> set[str]:
        """Destinations with tasks that ended FAILURE or WARNING since then."""
        return {r[0] for r in self.database.read().execute(
            "SELECT DISTINCT destination FROM tasks WHERE finished_at >= ? AND state IN (?, ?)",
            (since, FAILURE, WARNING)).fetchall()}

    def queue_wait(self) -> float:
        """Seconds the oldest task due now has been waiting (0 when none waits)."""
        now = self.clock()
        row = self.database.read().execute("SELECT MIN(next_attempt_at) FROM tasks WHERE state = ? AND next_attempt_at <= ?",
                                           (PENDING, now)).fetchone()
        return max(0.0, now - row[0]) if row and row[0] is not None else 0.0

    def unfinished_uses(self) -> dict[str, int]:
        """Unfinished tasks by every destination, source, profile and route (routed tasks) they
        name: what they use may not leave the configuration."""
        uses: dict[str, int] = {}
        marks = ", ".join("?" * len(FINAL_STATES))
        for column, only in (("destination", ""), ("source", ""), ("profile", ""), ("route", " AND job_id IS NULL")):
            for name, count in self.database.read().execute(
                    f"SELECT {column}, COUNT(*) FROM tasks WHERE state NOT IN ({marks}) AND {column} IS NOT NULL{only}"
                    f" GROUP BY {column}", FINAL_STATES).fetchall():
                uses[f"{column}:{name}"] = count
        return uses

    def queue_depth(self) -> dict[str, int]:
        depth = {state: 0 for state in STATES}
        for state, count in self.database.read().execute("SELECT state, COUNT(*) FROM tasks GROUP BY state"):
            depth[state] = count
        return depth

    def destination_stats(self) -> dict[str, dict]:
        stats: dict[str, dict] = {}
        for row in self.database.read().execute("SELECT destination, state, COUNT(*) FROM tasks GROUP BY destination, state"):
            stats.setdefault(row[0], {"tasks": {s: 0 for s in STATES}})["tasks"][row[1]] = row[2]
        for row in self.database.read().execute("SELECT * FROM destination_stats"):
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
        for route, state, count in self.database.read().execute("SELECT route, state, COUNT(*) FROM tasks GROUP BY route, state"):
            counts.setdefault(route, {})[state] = count
        return counts

    def job_study_ids(self) -> set[str]:
        """Orthanc study IDs that unfinished jobs are fetching: routes leave them alone."""
        return {r[0] for r in self.database.read().execute(
            "SELECT COALESCE(study_id, resource_id) FROM tasks WHERE job_id IS NOT NULL AND state IN (?, ?)",
            (PENDING, RUNNING))}
