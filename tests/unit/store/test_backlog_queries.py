"""With a large backlog (a destination down for hours: tens of thousands of PENDING tasks, their
retries in the future) the questions every idle worker asks are seeks, not scans: when the next
retry falls due (once a second per worker) and whether anything is due at all (before each
claim). Counted in SQLite virtual-machine steps on a real store, never timed: a scan of 20,000
tasks takes hundreds of thousands of steps, a seek a few dozen."""
from courier.store.records import ManifestItem, NewTask
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
