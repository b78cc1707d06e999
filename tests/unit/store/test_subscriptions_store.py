"""Subscriptions and background job items in the store, on both back-ends: leases, each study
recorded once (a second router or a rerun makes no second task), top-ups, job items resolved
into held tasks, deletion."""
from conftest import Clock
from courier.store.records import FAILURE, PENDING, SUCCESS, Attempt, Found, JobTarget, ManifestItem

SPEC = {"Source": "pacs", "Destination": "d", "Pseudonymize": None, "Trial": {}, "Urgent": False, "Query": {},
        "Match": {}, "MaxStudiesPerRun": 10, "PauseBetweenStudiesSeconds": 5}


def target(uid):
    return JobTarget(uid, f"id-{uid}", f"id-{uid}", False, patient_id="P")


def test_a_study_is_recorded_once_across_routers_and_grows_into_a_top_up(make_store):
    clock = Clock()
    store = make_store(clock)
    sub_id = store.subscriptions.create("alice", "nightly", SPEC, "20260331", "20260330", "20260321")
    assert store.subscriptions.due() == [sub_id]
    a = store.subscriptions.take(sub_id, "A:1:scheduler", 300)
    assert a is not None and store.subscriptions.take(sub_id, "B:1:scheduler", 300) is None   # leased to A
    assert store.subscriptions.due() == []
    found = store.subscriptions.known(sub_id, [Found("1.2.1", "P", "20260321", 3), Found("1.2.2", "P", "20260322", 2)])
    assert [f.known for f in found] == [None, None]
    made = store.subscriptions.record_run(a, "A:1:scheduler", [(f, target(f.study_uid)) for f in found],
                                          {"backfill_next": "20260322"}, {"Windows": []})
    assert made == 2
    job = store.jobs.get(a.job_id)
    assert job.subscription_id == sub_id and job.tasks[PENDING] == 2 and job.pause_seconds == 5
    due = sorted(t.next_attempt_at for t in store.tasks.list(job_id=a.job_id)[1])
    assert due == [clock.now, clock.now + 5]                                # PauseBetweenStudiesSeconds apart
    # a second router running the same subscription later sees both studies as transferred
    clock.now += 400
    b = store.subscriptions.take(sub_id, "B:1:scheduler", 300)
    again = store.subscriptions.known(sub_id, [Found("1.2.1", "P", "20260321", 3), Found("1.2.2", "P", "20260322", 5)])
    assert [(f.known, f.busy) for f in again] == [(3, True), (2, True)]
    # a stale view (known None) is refused by the record, so no second task
    assert store.subscriptions.record_run(b, "B:1:scheduler", [(Found("1.2.1", "P", "20260321", 3), target("1.2.1"))],
                                          {}, {}) == 0
    assert store.jobs.get(a.job_id).tasks[PENDING] == 2
    sub = store.subscriptions.get(sub_id)
    assert sub.backfill_next == "20260322" and sub.runs == 2 and sub.last_run == {"Tasks": 0}
    # the grown study becomes a top-up task
    c = store.subscriptions.take(sub_id, "B:1:scheduler", 300)
    assert store.subscriptions.record_run(c, "B:1:scheduler", [(again[1], target("1.2.2"))], {}, {}) == 1
    assert store.subscriptions.counts(sub_id) == {"Studies": 2, "TopUps": 1, "FailedTasks": 0}
    total, studies = store.subscriptions.studies(sub_id)
    assert total == 2 and {(s["StudyInstanceUID"], s["Instances"], s["Transfers"]) for s in studies} == \
        {("1.2.1", 3, 1), ("1.2.2", 5, 2)}
    assert all("PatientID" not in s for s in studies)


def test_a_run_whose_lease_was_lost_records_nothing(make_store):
    clock = Clock()
    store = make_store(clock)
    sub_id = store.subscriptions.create("alice", None, SPEC, "20260331", None, None)
    a = store.subscriptions.take(sub_id, "A:1:scheduler", 10)
    clock.now += 20                                                         # A hung past its lease
    b = store.subscriptions.take(sub_id, "B:1:scheduler", 10)
    assert b is not None
    assert store.subscriptions.record_run(a, "A:1:scheduler", [(Found("1.2.9", "P", "", 1), target("1.2.9"))], {}, {}) == 0
    store.subscriptions.release_leases("B:")
    assert store.subscriptions.take(sub_id, "A:2:scheduler", 10) is not None


def test_a_lease_held_by_a_router_that_is_gone_is_taken_over_before_it_expires(make_store):
    """A router killed in the middle of a run held its subscription's and job's leases for their
    whole length (300 s): another router now takes them once the first one's heartbeat is older
    than the heartbeat timeout, or at once if it stopped or started again (another incarnation)."""
    clock = Clock()
    store = make_store(clock)
    store.routers.register("A", "A:1:aa")
    store.routers.register("B", "B:1:bb")
    sub_id = store.subscriptions.create("alice", None, SPEC, "20260331", None, None)
    job_id = store.jobs.create("alice", "pacs", "d", None, False, [], items=[{"StudyInstanceUID": "1.2.3"}], start=False)
    assert store.subscriptions.take(sub_id, "A:1:aa:scheduler", 300, stale_after=4) is not None
    assert store.jobs.take_items(job_id, "A:1:aa:scheduler", 300, limit=2, stale_after=4) is not None
    clock.now += 3                                                          # A's heartbeat is 3 s old: A holds them
    store.routers.heartbeat("B", "B:1:bb")
    assert store.subscriptions.due(4) == [] and store.jobs.querying(4) == []
    assert store.subscriptions.take(sub_id, "B:1:bb:scheduler", 300, stale_after=4) is None
    assert store.jobs.take_items(job_id, "B:1:bb:scheduler", 300, limit=2, stale_after=4) is None
    clock.now += 2                                                          # 5 s: A is gone (kill -9)
    assert store.subscriptions.due() == [] and store.jobs.querying() == []   # by expiry alone: 295 s more
    assert store.subscriptions.due(4) == [sub_id] and store.jobs.querying(4) == [job_id]
    assert store.subscriptions.take(sub_id, "B:1:bb:scheduler", 300, stale_after=4) is not None
    assert store.jobs.take_items(job_id, "B:1:bb:scheduler", 300, limit=2, stale_after=4) is not None
    # B's own leases stay B's while it lives, even to a router whose name begins like B's
    store.routers.register("B2", "B2:1:cc")
    assert store.subscriptions.take(sub_id, "B2:1:cc:scheduler", 300, stale_after=4) is None
    # B, killed, starts again at once (another incarnation, its heartbeat fresh): the lease is free
    with store.database.transaction() as db:
        db.execute("UPDATE routers SET incarnation = ?, heartbeat_at = ? WHERE name = ?", ("B:2:dd", clock.now, "B"))
    assert store.subscriptions.take(sub_id, "B2:1:cc:scheduler", 300, stale_after=4) is not None
    # a router that stopped gracefully frees its leases at once
    store.routers.stopped("B2", "B2:1:cc")
    assert store.subscriptions.take(sub_id, "B:2:dd:scheduler", 300, stale_after=4) is not None


def test_a_failed_run_shows_its_error_and_is_retried_later(make_store):
    clock = Clock()
    store = make_store(clock)
    sub_id = store.subscriptions.create("alice", None, SPEC, "20260331", "20260330", "20260301")
    sub = store.subscriptions.take(sub_id, "A:1:scheduler", 300)
    store.subscriptions.failed_run(sub, "A:1:scheduler", "query on pacs: association refused", 30)
    after = store.subscriptions.get(sub_id)
    assert after.last_error == "query on pacs: association refused" and after.next_run_at == clock.now + 30
    assert store.subscriptions.due() == []
    clock.now += 31
    assert store.subscriptions.due() == [sub_id]


def test_pause_resume_and_delete(make_store):
    store = make_store()
    sub_id = store.subscriptions.create("alice", None, SPEC, "20260331", None, None)
    sub = store.subscriptions.take(sub_id, "A:1:scheduler", 1)
    store.subscriptions.record_run(sub, "A:1:scheduler", [(Found("1.2.1", "P", "", 1), target("1.2.1"))],
                                   {"next_run_at": 10**10}, {})
    store.subscriptions.control(sub_id, "pause", "alice")
    assert store.subscriptions.get(sub_id).paused and store.jobs.get(sub.job_id).paused
    assert store.tasks.claim("w", 10) is None                               # its job's tasks wait
    store.subscriptions.control(sub_id, "resume", "alice")
    assert store.subscriptions.due() == [sub_id]                            # resumed: runs at once
    store.subscriptions.control(sub_id, "delete", "alice")
    assert store.subscriptions.get(sub_id) is None
    job = store.jobs.get(sub.job_id)
    assert job.canceled and job.tasks["CANCELED"] == 1 and job.subscription_id is None
    assert [e["action"] for e in store.audit.entries(limit=10)[1]][:3] == \
        ["subscription-delete", "subscription-resume", "subscription-pause"]


def test_job_items_resolved_in_the_background_are_held_until_start(make_store):
    store = make_store()
    job_id = store.jobs.create("bob", "pacs", "d", None, False, [], items=[{"PatientID": "P1"}, {"PatientID": "P2"},
                                                                          {"PatientID": "P3"}], start=False)
    job = store.jobs.get(job_id)
    assert job.phase == "QUERYING" and job.items == {"Total": 3, "Resolved": 0, "Failed": 0}
    assert store.jobs.querying() == [job_id]
    source, items = store.jobs.take_items(job_id, "A:1:scheduler", 300, limit=2)
    assert source == "pacs" and [i for i, _ in items] == [0, 1] and store.jobs.querying() == []
    assert store.jobs.take_items(job_id, "B:1:scheduler", 300, limit=2) is None
    started = store.jobs.resolved_items(job_id, "A:1:scheduler", {0: [target("1.2.1"), target("1.2.2")],
                                                                 1: "Items[0]: pacs holds no study"})
    assert not started and store.jobs.get(job_id).items == {"Total": 3, "Resolved": 2, "Failed": 1}
    _, items = store.jobs.take_items(job_id, "A:1:scheduler", 300, limit=2)
    assert [i for i, _ in items] == [2]
    store.jobs.resolved_items(job_id, "A:1:scheduler", {2: [target("1.2.2"), target("1.2.3")]})   # 1.2.2 twice: once
    job = store.jobs.get(job_id)
    assert job.phase == "READY" and job.tasks[PENDING] == 3 and store.tasks.claim("w", 10) is None
    assert store.jobs.start(job_id, "bob") is None and store.jobs.get(job_id).phase is None
    assert store.jobs.start(job_id, "bob") == f"job {job_id} has started already"
    assert store.tasks.claim("w", 10) is not None


def test_added_items_skip_what_the_job_has_and_finished_jobs_are_deleted(make_store):
    store = make_store()
    job_id = store.jobs.create("bob", "pacs", "d", None, False, [target("1.2.1")])
    assert store.jobs.add_targets(job_id, "bob", [target("1.2.1"), target("1.2.2")]) == 1
    assert "PENDING or RUNNING; cancel it first" in store.jobs.delete(job_id, "admin")
    for _ in range(2):
        claim = store.tasks.claim("w", 10)
        task = claim.tasks[0]
        store.tasks.replace_manifest(task.id, [ManifestItem("i", "1.2.3.4")])
        store.tasks.finish_attempts("w", [Attempt(task, [], 0, FAILURE if task.study_uid == "1.2.2" else SUCCESS, 1)])
        store.tasks.release_slot("w")
    batch = store.jobs.create_batch("bob", "transfer", "pacs", "f.csv", [{"line": 2}], job_id=job_id)
    assert store.jobs.delete(job_id, "admin") is None
    assert store.jobs.get(job_id) is None and store.jobs.batch(batch) is None and store.tasks.list(job_id=job_id)[0] == 0
    assert store.audit.entries(limit=1)[1][0]["action"] == "job-deleted"


def test_a_job_task_skips_what_another_task_of_its_job_delivered(make_store):
    store = make_store()
    job_id = store.jobs.create("bob", "pacs", "d", None, False, [target("1.2.1")])
    first = store.tasks.claim("w", 10).tasks[0]
    store.tasks.replace_manifest(first.id, [ManifestItem("a", "1.2.1.1"), ManifestItem("b", "1.2.1.2")])
    store.tasks.progress("w", {first.id: ["a"]})
    store.tasks.release_slot("w")
    with store.database.transaction() as db:               # a top-up task of the same study
        from courier.store.jobs import insert_job_tasks
        (second_id,) = insert_job_tasks(db, store.clock(), job_id, "d", None, False, [target("1.2.1")])
    assert store.tasks.delivered_by_job(store.tasks.get(second_id)) == {"1.2.1.1"}
    assert store.tasks.delivered_by_job(first) == set()


def test_after_a_study_the_next_ones_of_the_job_wait_the_break_each_a_break_apart(make_store):
    clock = Clock()
    store = make_store(clock)
    sub_id = store.subscriptions.create("alice", None, SPEC, "20260331", None, None)          # a 5 s break
    sub = store.subscriptions.take(sub_id, "A:1:scheduler", 300)
    store.subscriptions.record_run(sub, "A:1:scheduler", [(Found(f"1.2.{n}", "P", "", 1), target(f"1.2.{n}"))
                                                          for n in range(3)], {}, {})
    store.jobs.pause_after_study(sub.job_id)
    due = sorted(t.next_attempt_at for t in store.tasks.list(job_id=sub.job_id)[1])
    assert due == [clock.now + 5, clock.now + 10, clock.now + 15]


def test_a_run_another_router_has_just_finished_is_not_run_again(make_store):
    """Both routers saw the subscription due; A ran it first (its next run moved on): B's take,
    asked only if it is still due, gets nothing, rather than a second run straight after."""
    clock = Clock()
    store = make_store(clock)
    sub_id = store.subscriptions.create("alice", "nightly", SPEC, "20260331", None, None)
    assert store.subscriptions.due() == [sub_id]                            # what A and B both read
    a = store.subscriptions.take(sub_id, "A:1:scheduler", 300, if_due=True)
    assert a is not None
    store.subscriptions.record_run(a, "A:1:scheduler", [], {"next_run_at": clock.now + 86400}, {})   # tomorrow
    assert store.subscriptions.due() == []
    assert store.subscriptions.take(sub_id, "B:1:scheduler", 300, if_due=True) is None
    assert store.subscriptions.get(sub_id).runs == 1
    assert store.subscriptions.take(sub_id, "B:1:scheduler", 300) is not None     # a lease alone, as before
