"""The store on both back-ends (SQLite, PostgreSQL): atomic enqueues, exclusive claims across
threads and processes, finishing, requeueing, the cursor and the routers table."""
import threading

import pytest

from conftest import Clock
from courier.store.postgres import PostgresDatabase
from courier.store.records import CANCELED, PENDING, RUNNING, SUCCESS, Attempt, AuditEvent, JobTarget, ManifestItem, NewTask
from courier.store.store import Store


def claimed(store, owner, limit, **options):
    """The tasks of a claim, or [] when there is nothing to claim."""
    claim = store.tasks.claim(owner, limit, **options)
    return list(claim.tasks) if claim else []


def test_enqueue_is_atomic_with_the_cursor_and_survives_reopening(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1")], [AuditEvent("x")], cursor=("changes", 42))
    again = make_store()
    assert again.tasks.cursor("changes") == 42
    assert again.tasks.queue_depth()[PENDING] == 1


def test_claims_are_exclusive_across_threads(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "d", "Instance", f"i{n}") for n in range(200)])
    taken: list[int] = []
    lock = threading.Lock()

    def worker(name):
        while True:
            batch = claimed(store, name, 7)
            if not batch:
                return
            with lock:
                taken.extend(t.id for t in batch)
    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(1, 201))


def test_claim_takes_one_destination_most_urgent_first_and_respects_next_attempt(make_store):
    clock = Clock()
    store = make_store(clock)
    store.tasks.enqueue([NewTask("r", "a", "Instance", "i1"), NewTask("r", "b", "Instance", "i2", priority=5),
                   NewTask("r", "b", "Instance", "i3")])
    batch = claimed(store, "w", 10)
    assert [t.resource_id for t in batch] == ["i2", "i3"] and {t.destination for t in batch} == {"b"}
    task = batch[0]
    store.tasks.save_manifests({task.id: [ManifestItem("i2", "1.2.3", 10)]})
    assert store.tasks.finish_attempts("w", [Attempt(task, [], 1, PENDING, retry_in=30.0, error="down")]) == [task.id]
    assert [t.resource_id for t in claimed(store, "w", 10)] == ["i1"]
    clock.now += 31
    assert [t.resource_id for t in claimed(store, "w", 10)] == ["i2"]


def test_finish_counts_per_sop_uid_and_keeps_the_missing(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "d", "Series", "s1")])
    task = claimed(store, "w", 1)[0]
    store.tasks.save_manifests({task.id: [ManifestItem(f"i{n}", f"1.2.{n}", 100) for n in range(3)]})
    store.tasks.finish_attempts("w", [Attempt(task, ["i0", "i2"], 1, "WARNING", expected=3, error="1 instance(s) not delivered")])
    saved = store.tasks.get(task.id)
    assert (saved.state, saved.delivered, saved.expected, saved.bytes) == ("WARNING", 2, 3, 200)
    assert store.tasks.missing(task.id) == ["1.2.1"]
    assert store.tasks.destination_stats()["d"]["delivered_instances"] == 2
    assert store.tasks.destination_stats()["d"]["failed_instances"] == 1


def test_a_cancelled_running_task_is_not_overwritten_by_its_worker(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1")])
    task = claimed(store, "w", 1)[0]
    assert store.tasks.set_state(task.id, (PENDING, RUNNING), CANCELED, "alice", "task-cancelled") == RUNNING
    assert store.tasks.finish_attempts("w", [Attempt(task, ["i1"], 0, SUCCESS)]) == []
    assert store.tasks.get(task.id).state == CANCELED
    total, entries = store.audit.entries(actor="alice")
    assert total == 1 and entries[0]["action"] == "task-cancelled"


def test_abandoned_tasks_are_requeued(make_store):
    clock = Clock()
    store = make_store(clock)
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1"), NewTask("r", "e", "Instance", "i2")])
    mine = claimed(store, "node-a:1:w0", 1)[0]
    other = claimed(store, "node-b:7:w0", 1)[0]
    assert store.tasks.requeue_abandoned("node-a:", stale_after=60) == 1       # my previous incarnation
    assert store.tasks.get(mine.id).state == PENDING
    assert store.tasks.get(other.id).state == RUNNING
    clock.now += 61                                                       # node-b's heartbeat is lost
    assert store.tasks.requeue_abandoned(None, stale_after=60) == 1
    assert store.tasks.get(other.id).state == PENDING


def test_listing_filters_and_paginates(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r1" if n % 2 else "r2", "d", "Instance", f"i{n}") for n in range(10)])
    total, rows = store.tasks.list(route="r1", limit=2, offset=1)
    assert total == 5 and len(rows) == 2 and all(r.route == "r1" for r in rows)
    assert rows[0].id > rows[1].id


def test_a_manifest_known_at_enqueue_is_kept_and_the_outcome_frees_the_slot_in_its_transaction(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1", manifest=(ManifestItem("i1", "1.2.1", 100),)),
                         NewTask("r", "d", "Instance", "i2")])
    tasks = claimed(store, "w", 2)
    assert store.tasks.busy_slots() == {"d": 1}
    assert [t.expected for t in tasks] == [1, None]
    assert store.tasks.manifests([t.id for t in tasks]) == {tasks[0].id: [ManifestItem("i1", "1.2.1", 100)],
                                                            tasks[1].id: []}
    store.tasks.finish_attempts("w", [Attempt(tasks[0], ["i1"], 0, "SUCCESS", expected=1)], release_slot=True)
    assert store.tasks.busy_slots() == {}
    saved = store.tasks.get(tasks[0].id)
    assert (saved.state, saved.delivered, saved.bytes) == ("SUCCESS", 1, 100)
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i3")])
    claimed(store, "w2", 1)
    store.tasks.finish_attempts("w2", [])               # without release_slot the slot stays held
    assert store.tasks.busy_slots() == {"d": 1}


def test_a_batch_is_finished_task_by_task_as_before(make_store):
    """One call records a batch of mixed outcomes: each task its own totals and audit line, the
    counters per destination, a task cancelled meanwhile and a second attempt of the same task
    left alone, an instance delivered again counted in the destination's bytes once more."""
    store = make_store()
    store.tasks.enqueue([NewTask("r", "a", "Instance", f"i{n}", manifest=(ManifestItem(f"i{n}", f"1.2.{n}", 100 + n),))
                         for n in range(4)] + [NewTask("r", "a", "Series", "s1")])
    tasks = claimed(store, "w", 10)
    series = tasks[4]
    store.tasks.save_manifests({series.id: [ManifestItem(f"s{n}", f"1.3.{n}", 10) for n in range(3)]})
    store.tasks.finish_attempts("w", [Attempt(series, ["s0"], 2, PENDING, expected=3, retry_in=0, error="refused")])
    series = claimed(store, "w", 10)[0]
    assert store.tasks.set_state(tasks[3].id, (PENDING, RUNNING), CANCELED, "alice", "task-cancelled") == RUNNING
    recorded = store.tasks.finish_attempts("w", [
        Attempt(tasks[0], ["i0"], 0, SUCCESS, expected=1),
        Attempt(tasks[1], [], 1, PENDING, expected=1, retry_in=30.0, error="down"),
        Attempt(tasks[2], ["i2", "i2"], 0, SUCCESS, expected=1),
        Attempt(tasks[3], ["i3"], 0, SUCCESS, expected=1),                       # cancelled meanwhile
        Attempt(tasks[0], [], 1, PENDING, expected=1, error="a second attempt"),  # finished already
        Attempt(series, ["s0", "s1", "s2"], 0, SUCCESS, expected=3),             # s0 again
    ], release_slot=True)
    assert recorded == [tasks[0].id, tasks[1].id, tasks[2].id, series.id]
    saved = {t.id: store.tasks.get(t.id) for t in tasks}
    assert [(saved[t.id].state, saved[t.id].delivered, saved[t.id].bytes, saved[t.id].attempts) for t in tasks] == [
        (SUCCESS, 1, 100, 1), (PENDING, 0, 0, 1), (SUCCESS, 1, 102, 1), (CANCELED, 0, 0, 0), (SUCCESS, 3, 30, 2)]
    assert saved[tasks[1].id].last_error == "down"
    stats = store.tasks.destination_stats()["a"]
    # i0 and i2 (the latter named twice), s0 in the first attempt, then s0, s1, s2
    assert (stats["delivered_instances"], stats["failed_instances"], stats["delivered_bytes"]) == (7, 3, 100 + 102 + 40)
    total, entries = store.audit.entries(action="task-delivered")
    assert total == 3 and {e["task_id"] for e in entries} == {tasks[0].id, tasks[2].id, series.id}
    assert store.tasks.busy_slots() == {}


def test_enqueueing_and_finishing_a_batch_take_as_many_statements_for_40_tasks_as_for_4(make_store):
    """Set-wise: on PostgreSQL each statement is a round trip, and on either back-end a call from
    Python; a batch of tasks costs a handful of them, not several per task."""
    store = make_store()
    transaction = store.tasks.database.transaction
    calls: list[str] = []

    class Counting:
        def __init__(self, db):
            self.db = db

        def execute(self, sql, args=()):
            calls.append(sql)
            return self.db.execute(sql, args)

        def executemany(self, sql, rows):
            calls.append(sql)
            return self.db.executemany(sql, rows)

        def __getattr__(self, name):
            return getattr(self.db, name)

    @__import__("contextlib").contextmanager
    def counted():
        with transaction() as db:
            yield Counting(db)
    store.tasks.database.transaction = counted
    used = []
    for size in (4, 40):
        del calls[:]
        store.tasks.enqueue([NewTask("r", f"d{size}", "Instance", f"i{size}-{n}",
                                     manifest=(ManifestItem(f"i{size}-{n}", f"1.{n}", 10),)) for n in range(size)])
        enqueued = len(calls)
        tasks = claimed(store, "w", size)
        assert len(tasks) == size
        del calls[:]
        assert len(store.tasks.finish_attempts("w", [Attempt(t, [t.resource_id], 0, SUCCESS, expected=1)
                                                     for t in tasks], release_slot=True)) == size
        used.append((enqueued, len(calls)))
    assert used[0] == used[1], used
    assert all(total <= 8 for total in used[1]), used


def test_a_claim_that_can_change_nothing_opens_no_write_transaction(make_store):
    """Nothing due and no slot of its own to drop: a read answers (most claims of a burst find
    nothing); a slot left behind, or a task due, is still a claim."""
    store = make_store()
    transactions = []
    transaction = store.tasks.database.transaction

    def counted():
        transactions.append(1)
        return transaction()
    store.tasks.database.transaction = counted
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1")])
    [task] = claimed(store, "w", 5)
    store.tasks.finish_attempts("w", [Attempt(task, ["i1"], 0, "SUCCESS", expected=1)], release_slot=True)
    del transactions[:]
    assert claimed(store, "w", 5) == [] and claimed(store, "v", 5) == []
    assert transactions == []
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i2")])
    [again] = claimed(store, "v", 5)                      # due: claimed
    store.tasks.finish_attempts("v", [Attempt(again, ["i2"], 0, "SUCCESS", expected=1)])   # its slot kept
    assert store.tasks.busy_slots() == {"d": 1}
    del transactions[:]
    assert claimed(store, "v", 5) == []                   # nothing due, but its own slot to drop
    assert len(transactions) == 1 and store.tasks.busy_slots() == {}


def test_due_count_counts_what_claim_more_would_take(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "d", "Instance", f"i{n}") for n in range(5)]
                        + [NewTask("gone", "d", "Instance", "g1"), NewTask("r", "other", "Instance", "o1")])
    known = {"destination": ["d", "other"], "source": [], "profile": [], "route": ["r"]}
    assert store.tasks.due_count("d", 50, known) == 5        # not the task of a route the configuration lost
    assert store.tasks.due_count("d", 3, known) == 3
    assert store.tasks.due_count("d", 50) == 6
    claimed(store, "w", 2, known=known)
    assert store.tasks.due_count("d", 50, known) == len(store.tasks.claim_more("w", "d", 50, known)) == 3


def test_a_destination_served_by_enough_workers_is_skipped(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "hung", "Instance", f"h{n}", priority=9) for n in range(3)]
                  + [NewTask("r", "fine", "Instance", "f1")])
    batches = [claimed(store, f"w{n}", 1, max_workers_per_destination=2) for n in range(4)]
    assert [[t.destination for t in batch] for batch in batches] == [["hung"], ["hung"], ["fine"], []]


def test_a_short_batch_is_topped_up_with_due_tasks_of_its_destination_only(make_store):
    clock = Clock()
    store = make_store(clock)
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1")])
    first = claimed(store, "w", 10)
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i2"), NewTask("r", "other", "Instance", "i3"),
                         NewTask("r", "d", "Instance", "i4"), NewTask("r", "d", "Instance", "i5")])
    more = store.tasks.claim_more("w", "d", 2)
    assert [t.resource_id for t in first] == ["i1"] and [t.resource_id for t in more] == ["i2", "i4"]
    assert all(t.state == RUNNING and t.owner == "w" for t in more)
    assert store.tasks.claim_more("w", "d", 0) == []
    assert [t.resource_id for t in claimed(store, "v", 10)] in (["i3"], ["i5"])   # the rest is still there for others


def test_paused_jobs_and_closed_sources_are_not_claimed(make_store):
    store = make_store()
    paused = store.jobs.create("alice", "pacs", "d", None, False, [JobTarget("1.2.1", "s1", "s1", False)])
    other = store.jobs.create("alice", "night-pacs", "d", None, True, [JobTarget("1.2.2", "s2", "s2", False)])
    store.jobs.control(paused, "pause", "alice")
    assert claimed(store, "w", 10, closed_sources=["night-pacs"]) == []
    assert [t.study_uid for t in claimed(store, "w", 10)] == ["1.2.2"]       # urgent, window open
    store.jobs.control(paused, "resume", "alice")
    assert [t.study_uid for t in claimed(store, "w", 10)] == ["1.2.1"]
    assert store.jobs.get(other).urgent and store.jobs.get(paused).tasks["RUNNING"] == 1


def test_a_source_at_its_parallel_limit_is_skipped(make_store):
    store = make_store()
    store.jobs.create("a", "pacs", "d1", None, False, [JobTarget(f"1.2.{n}", f"s{n}", f"s{n}", False) for n in range(3)])
    store.jobs.create("a", "pacs", "d2", None, False, [JobTarget("1.3.1", "t1", "t1", False)])
    first = claimed(store, "w1", 1, source_limits={"pacs": 2})
    second = claimed(store, "w2", 1, source_limits={"pacs": 2})
    assert len(first) == len(second) == 1
    assert claimed(store, "w3", 10, source_limits={"pacs": 2}) == []           # pacs already serves two tasks
    assert len(claimed(store, "w3", 10, source_limits={"pacs": 3})) >= 1


def test_a_job_task_is_fetched_without_a_slot_of_its_destination_and_sent_with_one(make_store):
    store = make_store()
    job_id = store.jobs.create("a", "pacs", "d", None, False,
                               [JobTarget(f"1.2.{n}", f"s{n}", f"s{n}", False) for n in range(3)])
    one = {"max_workers_per_destination": 1}
    (first,) = claimed(store, "w1", 1, **one)
    assert first.phase == "fetch" and store.tasks.busy_slots() == {}
    assert store.tasks.fetched("w1", first.id)
    (sending,) = claimed(store, "w2", 1, **one)          # the fetched study first: its place in the queue kept
    assert (sending.id, sending.phase, store.tasks.busy_slots()) == (first.id, "send", {"d": 1})
    (second,) = claimed(store, "w3", 1, **one)           # d is busy, yet the next study is fetched meanwhile
    assert second.phase == "fetch" and store.tasks.fetched("w3", second.id)
    store.jobs.pause_after_study(job_id)                 # no break set: nothing moves
    assert claimed(store, "w4", 1, **one) == []          # one fetched study waits for d: no further ahead
    store.tasks.finish_attempts("w2", [Attempt(sending, [], 0, SUCCESS)])
    store.tasks.release_slot("w2")
    (next_send,) = claimed(store, "w4", 1, **one)
    assert (next_send.id, next_send.phase) == (second.id, "send")
    (third,) = claimed(store, "w5", 1, **one)
    assert third.phase == "fetch"
    assert store.tasks.release("w4", [second.id], "router stopping") == 1
    assert store.tasks.get(second.id).phase == "send"    # put back, still fetched
    assert claimed(store, "w6", 1, **one) == []          # w4 still holds d's slot until its send returns
    store.tasks.release_slot("w4")
    assert claimed(store, "w6", 1, **one)[0].id == second.id


def test_a_fetched_study_is_sent_without_waiting_for_the_break_and_deleted_if_cancelled(make_store):
    store = make_store()
    job_id = store.jobs.create("a", "pacs", "d", None, False,
                               [JobTarget(f"1.3.{n}", f"t{n}", f"t{n}", False) for n in range(2)])
    with store.database.transaction() as db:
        db.execute("UPDATE jobs SET pause_seconds = 600 WHERE id = ?", (job_id,))
    (first,) = claimed(store, "w1", 1)
    assert store.tasks.fetched("w1", first.id)
    store.jobs.pause_after_study(job_id)                 # the break spares the source: the next fetch waits
    (sending,) = claimed(store, "w2", 1)
    assert sending.id == first.id and claimed(store, "w3", 1) == []
    store.jobs.control(job_id, "cancel", "alice")
    assert [t.id for t in store.tasks.cancelled_fetched()] == [first.id]   # its fetched copy is to be deleted
    store.tasks.forget_fetched(first.id)
    assert store.tasks.cancelled_fetched() == []


def test_a_send_paused_or_stopped_keeps_its_study_fetched_and_a_failed_one_fetches_again(make_store):
    store = make_store()
    store.jobs.create("a", "pacs", "d", None, False, [JobTarget("1.4.1", "u1", "u1", False)])
    (task,) = claimed(store, "w1", 1)
    assert store.tasks.fetched("w1", task.id)
    (sending,) = claimed(store, "w2", 1)
    store.tasks.finish_attempts("w2", [Attempt(sending, [], 0, PENDING, interrupted=True, error="interrupted")])
    assert store.tasks.get(task.id).phase == "send"      # paused or stopped: sent next time, not fetched again
    store.tasks.release_slot("w2")
    (again,) = claimed(store, "w3", 1)
    assert again.phase == "send"
    store.tasks.finish_attempts("w3", [Attempt(again, [], 1, PENDING, retry_in=0.0, error="down")])
    assert store.tasks.get(task.id).phase is None        # a failed attempt checks the source again


def test_the_fetch_ahead_counts_fetches_in_flight_but_not_paused_jobs(make_store):
    store = make_store()
    one = {"max_workers_per_destination": 1}
    paused = store.jobs.create("a", "pacs", "d", None, False, [JobTarget("1.5.1", "v1", "v1", False)])
    other = store.jobs.create("a", "pacs", "d", None, False,
                              [JobTarget(f"1.6.{n}", f"w{n}", f"w{n}", False) for n in range(2)])
    (first,) = claimed(store, "w1", 1, **one)
    assert first.job_id == paused and store.tasks.fetched("w1", first.id)
    store.jobs.control(paused, "pause", "alice")          # its fetched study waits: it holds nobody back
    (fetching,) = claimed(store, "w2", 1, **one)
    assert fetching.job_id == other and fetching.phase == "fetch"
    assert claimed(store, "w3", 1, **one) == []          # one study of d in flight already: no second
    assert store.tasks.fetched("w2", fetching.id)
    store.jobs.control(paused, "cancel", "alice")
    assert store.jobs.delete(paused, "alice").startswith(f"job {paused}: 1 study")   # its copy is still to go
    store.tasks.forget_fetched(first.id)
    assert store.jobs.delete(paused, "alice") is None


def _claim_all(database_spec, owner, out, ready, go):
    """In another process: once all are connected, claim until nothing is left, write the ids claimed."""
    import sys
    sys.path[:0] = [database_spec["plugin"]]
    from courier.store.postgres import PostgresDatabase
    from courier.store.store import Store
    store = Store(database_spec["path"]) if database_spec["path"] else Store(PostgresDatabase(database_spec["url"]))
    ready.release()
    go.wait(60)
    ids = []
    while True:
        claim = store.tasks.claim(owner, 7)
        if claim is None:
            break
        ids += [t.id for t in claim.tasks]
        store.tasks.release_slot(owner)
    with open(out, "w") as handle:
        handle.write(",".join(map(str, ids)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_claims_are_exclusive_across_processes(tmp_path, request, backend):
    """Four processes on one database (on PostgreSQL, READ COMMITTED): each task claimed exactly once."""
    import multiprocessing
    from pathlib import Path
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    path = str(tmp_path / "c.sqlite") if backend == "sqlite" else None
    store = Store(path) if path else Store(PostgresDatabase(url))
    store.tasks.enqueue([NewTask("r", f"d{n % 3}", "Instance", f"i{n}") for n in range(1500)])
    spec = {"plugin": str(Path(__file__).resolve().parents[3] / "plugin"), "path": path, "url": url}
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"claimed-{n}" for n in range(4)]
    ready, go = context.Semaphore(0), context.Event()
    workers = [context.Process(target=_claim_all, args=(spec, f"p{n}:w0", str(out), ready, go))
               for n, out in enumerate(outs)]
    for worker in workers:
        worker.start()
    for _ in workers:
        assert ready.acquire(timeout=60)
    go.set()                                     # all start claiming together, none before the others connect
    for worker in workers:
        worker.join(120)
    claimed_ids = [int(i) for out in outs for i in out.read_text().split(",") if i]
    assert sorted(claimed_ids) == list(range(1, 1501))
    assert len({n for out in outs if out.read_text() for n in [out]}) >= 2        # several processes took part


def test_a_second_router_following_the_same_changes_writes_nothing(make_store):
    store = make_store()
    store.tasks.enqueue([], cursor=("changes", 10))
    assert store.tasks.enqueue([NewTask("r", "d", "Instance", "a")], cursor=("changes", 12), expect=10) == [1]
    late = store.tasks.enqueue([NewTask("r", "d", "Instance", "a")], cursor=("changes", 12), expect=10)
    assert late is None and store.tasks.cursor("changes") == 12 and store.tasks.queue_depth()[PENDING] == 1


def test_a_live_router_name_is_refused_and_free_again_once_its_process_is_gone(make_store):
    first, twin = make_store(), make_store()          # two processes' stores on one database
    assert first.routers.register("r1", "r1:100:a") is None
    refusal = twin.routers.register("r1", "r1:200:b")
    assert "another router named 'r1' is running" in refusal
    assert twin.routers.register("r2", "r2:200:b") is None           # another name is free
    first.database.close()                            # what the kernel does when a process dies, kill -9 included
    assert twin.routers.register("r1", "r1:300:c") is None
    assert {r["Name"]: r["Incarnation"] for r in twin.routers.all()} == {"r1": "r1:300:c", "r2": "r2:200:b"}


def test_tasks_naming_what_the_configuration_no_longer_has_wait(make_store):
    store = make_store()
    store.tasks.enqueue([NewTask("r", "gone", "Instance", "i1"), NewTask("r", "d", "Instance", "i2", profile="old"),
                         NewTask("r", "d", "Instance", "i3", priority=-1), NewTask("renamed", "d", "Instance", "i4"),
                         NewTask("manual:alice", "d", "Study", "s5", priority=-2)])
    known = {"destination": ["d"], "source": [], "profile": ["p"], "route": ["r"]}
    claim = store.tasks.claim("w1", 10, known=known)
    assert [t.resource_id for t in claim.tasks] == ["i3", "s5"]   # not to "gone", of profile "old" or route "renamed"
    store.tasks.release_slot("w1")
    assert store.tasks.claim("w2", 10, known=known) is None
    assert {t.resource_id for t in store.tasks.list(state="PENDING")[1]} == {"i1", "i2", "i4"}
    assert store.tasks.unfinished_uses() == {"destination:gone": 1, "destination:d": 4, "profile:old": 1,
                                             "route:r": 3, "route:renamed": 1, "route:manual:alice": 1}
