"""With a large backlog (a destination down for hours: tens of thousands of PENDING tasks, their
retries in the future) the questions every idle worker asks are seeks, not scans: when the next
retry falls due (once a second per worker) and whether anything is due at all (before each
claim). Counted in SQLite virtual-machine steps on a real store, never timed: a scan of 20,000
tasks takes hundreds of thousands of steps, a seek a few dozen."""
from courier.store.records import JobTarget, ManifestItem, NewTask
from courier.store.store import Store

BACKLOG = 20_000


def steps(connection, call):
    """SQLite VM instructions run by `call()` on this thread's read connection."""
    counted = [0]

    def count():
        counted[0] += 1
        return 0
    connection.set_progress_handler(count, 1)
    try:
        result = call()
    finally:
        connection.set_progress_handler(None, 1)
    return result, counted[0]


def test_an_idle_worker_looks_at_a_large_backlog_without_scanning_it(tmp_path):
    clock = [1000.0]
    store = Store(str(tmp_path / "c.sqlite"), clock=lambda: clock[0])
    for start in range(0, BACKLOG, 5000):
        store.tasks.enqueue([NewTask("r", "pacs", "Instance", f"i{n}", manifest=(ManifestItem(f"i{n}", f"1.2.{n}", 1),))
                             for n in range(start, start + 5000)])
    with store.database.transaction() as db:         # the destination is down: every retry an hour away
        db.execute("UPDATE tasks SET next_attempt_at = next_attempt_at + 3600")
    connection = store.database.read()
    due_in, looked = steps(connection, store.tasks.next_due_in)
    assert abs(due_in - 3600) < 1 and looked < 1000, f"{looked} steps"
    claim, looked = steps(connection, lambda: store.tasks.claim("router:1:w0", 50))
    assert claim is None and looked < 1000, f"{looked} steps"
    clock[0] += 3601                                  # and once they fall due, a claim takes a batch
    claim = store.tasks.claim("router:1:w0", 50)
    assert claim is not None and len(claim.tasks) == 50


def test_a_claim_skips_a_busy_destinations_backlog_without_scanning_it(tmp_path):
    """The destination with the backlog has all its MaxWorkersPerDestination busy: a claim takes
    the other destination's task (or a job task's fetch for the busy one) with a seek per
    destination, not a walk past every due task of the busy one, in the write transaction."""
    store = Store(str(tmp_path / "c.sqlite"), clock=lambda: 1000.0)
    for start in range(0, BACKLOG, 5000):
        store.tasks.enqueue([NewTask("r", "pacs", "Instance", f"i{n}", manifest=(ManifestItem(f"i{n}", f"1.2.{n}", 1),))
                             for n in range(start, start + 5000)])
    (other,) = store.tasks.enqueue([NewTask("r", "other", "Instance", "o1", manifest=(ManifestItem("o1", "9.9", 1),))])
    with store.database.transaction() as db:             # two other workers are sending to pacs
        db.executemany("INSERT INTO worker_slots (owner, destination, since, heartbeat_at) VALUES (?, 'pacs', 1000, 1000)",
                       [("router:1:w1",), ("router:1:w2",)])
    known = {"destination": ["pacs", "other"], "source": [], "profile": [], "route": ["r"]}
    claim, looked = steps(store.database.read(), lambda: store.tasks.claim(
        "router:1:w0", 50, max_workers_per_destination=2, known=known))
    assert claim.destination == "other" and [t.id for t in claim.tasks] == [other]
    assert looked < 5000, f"{looked} steps"
    store.tasks.release_slot("router:1:w0")
    assert store.tasks.claim("router:1:w0", 50, max_workers_per_destination=2, known=known) is None
    store.tasks.release_slot("router:1:w1")               # a slot of pacs is free: its most urgent batch
    claim = store.tasks.claim("router:1:w0", 50, max_workers_per_destination=2, known=known)
    assert claim.destination == "pacs" and len(claim.tasks) == 50 and claim.tasks[0].resource_id == "i0"


def test_with_a_destination_busy_a_claim_takes_the_most_urgent_of_the_others_and_a_busy_ones_fetch(make_store):
    """The same choice on both back-ends (PostgreSQL's rows, its partial indexes and SKIP LOCKED):
    the most urgent task among the destinations that may lend one; of a busy destination only a
    job task's fetch, and none once it fetches as far ahead as it may."""
    store = make_store()
    store.tasks.enqueue([NewTask("r", "pacs", "Instance", f"p{n}", priority=9) for n in range(30)])
    low, high = store.tasks.enqueue([NewTask("r", "other", "Instance", "o-low", priority=1),
                                     NewTask("r", "third", "Instance", "t-high", priority=5)])
    store.jobs.create("tester", "src", "pacs", None, False, [JobTarget(f"1.2.{n}", f"s{n}", f"s{n}", False) for n in range(2)])
    with store.database.transaction() as db:
        db.execute("INSERT INTO worker_slots (owner, destination, since, heartbeat_at) VALUES ('router:1:w1', 'pacs', ?, ?)",
                   (store.clock(), store.clock()))
    known = {"destination": ["pacs", "other", "third"], "source": ["src"], "profile": [], "route": ["r"]}

    def claim(owner):
        return store.tasks.claim(owner, 50, max_workers_per_destination=1, known=known)
    first = claim("router:1:w0")
    assert (first.destination, [t.id for t in first.tasks]) == ("third", [high])
    second = claim("router:1:w2")
    assert (second.destination, [t.id for t in second.tasks]) == ("other", [low])
    fetch = claim("router:1:w3")                       # pacs is busy, yet a study is fetched for it
    assert fetch.destination == "pacs" and [t.phase for t in fetch.tasks] == ["fetch"]
    assert claim("router:1:w4") is None                # as far ahead as MaxWorkersPerDestination allows
    store.tasks.release_slot("router:1:w1")             # pacs has a free slot: its most urgent batch
    batch = claim("router:1:w4")
    assert batch.destination == "pacs" and len(batch.tasks) == 30


def test_with_a_destination_busy_ties_held_destinations_and_paused_jobs_are_as_before(make_store):
    """Across destinations the order is the queue's own (priority, then next_attempt_at, then id);
    a disabled destination lends nothing, nor does a paused job's study for a busy one."""
    store = make_store()
    store.tasks.enqueue([NewTask("r", "pacs", "Instance", f"p{n}") for n in range(5)])
    early_id_late_due, late_id_early_due, same_due_later_id = store.tasks.enqueue(
        [NewTask("r", "other", "Instance", "o1"), NewTask("r", "third", "Instance", "t1"),
         NewTask("r", "fourth", "Instance", "f1")])
    now = store.clock()
    job_id = store.jobs.create("tester", "src", "pacs", None, False, [JobTarget("1.2.9", "s9", "s9", False)])
    with store.database.transaction() as db:
        db.execute("UPDATE tasks SET next_attempt_at = ? WHERE id = ?", (now - 10, early_id_late_due))
        db.execute("UPDATE tasks SET next_attempt_at = ? WHERE id IN (?, ?)", (now - 20, late_id_early_due, same_due_later_id))
        db.execute("UPDATE tasks SET next_attempt_at = ? WHERE job_id = ?", (now - 5, job_id))
        db.execute("UPDATE jobs SET paused = 1 WHERE id = ?", (job_id,))
        db.execute("INSERT INTO worker_slots (owner, destination, since, heartbeat_at) VALUES ('router:1:w1', 'pacs', ?, ?)",
                   (now, now))
    known = {"destination": ["pacs", "other", "third", "fourth"], "source": ["src"], "profile": [], "route": ["r"]}

    def claim(owner, **more):
        found = store.tasks.claim(owner, 50, max_workers_per_destination=1, known=known, **more)
        return None if found is None else [t.id for t in found.tasks]
    assert claim("router:1:w2", held_destinations=["third"]) == [same_due_later_id]   # third disabled
    assert claim("router:1:w3") == [late_id_early_due]           # earliest due, whatever its id
    assert claim("router:1:w4") == [early_id_late_due]
    assert claim("router:1:w5") is None                           # the paused job's study waits
