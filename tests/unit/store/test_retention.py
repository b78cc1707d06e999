"""Retention on both back-ends: what is older than RetentionDays goes, what is recent, unfinished,
or a job's stays; the pruning is audited."""
from conftest import Clock
from courier.store.records import FAILURE, SUCCESS, Attempt, AuditEvent, JobTarget, ManifestItem, NewTask, TrafficEvent

DAY = 86400.0


def finish(store, owner, state):
    claim = store.tasks.claim(owner, 10)
    for task in claim.tasks:
        store.tasks.replace_manifest(task.id, [ManifestItem(f"i{task.id}", f"1.2.{task.id}")])
    store.tasks.finish_attempts(owner, [Attempt(t, [], 0, state, 1) for t in claim.tasks])
    store.tasks.release_slot(owner)


def test_old_finished_routed_tasks_audit_and_import_records_are_pruned(make_store):
    clock = Clock(1000 * DAY)
    store = make_store(clock)
    store.tasks.enqueue([NewTask("r", "old", "Instance", "a"), NewTask("r", "old", "Instance", "b")])
    finish(store, "w", SUCCESS)
    store.jobs.create("u", "pacs", "job-dest", None, False, [JobTarget("1.2.9", "s9", "s9", False)])
    finish(store, "w", FAILURE)                                        # a job's task: stays with its job
    store.imports.rejected("folder", "x.txt", ".", 3, 0, "not DICOM", "not DICOM: text")
    clock.now += 100 * DAY
    store.tasks.enqueue([NewTask("r", "new", "Instance", "c")])         # recent and pending: stays
    store.audit.record(AuditEvent("recent"))
    assert store.retention.prune(0) == {}                              # 0: keep everything
    counts = store.retention.prune(90)
    assert counts == {"tasks": 2, "audit": counts["audit"], "import_files": 1, "uploads": 0, "traffic": 0} \
        and counts["audit"] >= 3
    left = store.tasks.list(limit=100)[1]
    assert sorted(t.destination for t in left) == ["job-dest", "new"]
    assert store.tasks.manifests([1, 2]) in ({1: [], 2: []}, {})
    actions = [e["action"] for e in store.audit.entries(limit=10)[1]]
    assert actions == ["retention-pruned", "recent", "task-created"]            # the recent task's line only
    assert store.imports.files("folder")[0] == 0


def test_a_held_lock_is_known_to_be_ours_until_its_connection_goes(make_store):
    store = make_store()
    assert store.database.hold("import:folder") and store.database.holds("import:folder")
    assert not store.database.holds("import:other")
    held = store.database._held_keys
    if isinstance(held, dict):                       # PostgreSQL: the lock lives on its connection
        connection = held["import:folder"]
        connection.close()
        assert not store.database.holds("import:folder")


def test_traffic_rows_older_than_the_retention_days_are_pruned(make_store):
    clock = Clock(1000 * DAY)
    store = make_store(clock)
    store.traffic.record([TrafficEvent("C-STORE", "OLD", "accepted", clock.now - 91 * DAY, instances=3)])
    store.traffic.record([TrafficEvent("C-FIND", "NEW", "accepted", clock.now - 89 * DAY, detail="STUDY")])
    assert store.retention.prune(90)["traffic"] == 1
    assert [r["calling_aet"] for r in store.traffic.entries()[1]] == ["NEW"]
    pruned = store.audit.entries(action="retention-pruned")[1][0]["detail"]
    assert pruned["traffic"] == 1
