"""A defect met in the middle of a batch (here a sender that raises what no sender should) does
not leave the batch RUNNING until the router restarts, held by a worker whose heartbeat keeps it
from being taken for abandoned: the tasks are recorded as a failed attempt that names the error,
retried with Courier.Retry's backoff, and delivered once the defect is gone. Real workers on a
real SQLite store, no Orthanc (the tasks come with their manifests)."""
from courier.config.parse import parse
from courier.engine.workers import Engine
from courier.store.records import PENDING, RUNNING, SUCCESS, ManifestItem, NewTask
from courier.store.store import Store
from harness import wait_until


class BreaksOnce:
    def __init__(self):
        self.calls, self.sent = 0, []

    def send(self, items, cancelled):
        self.calls += 1
        if self.calls == 1:
            raise KeyError("a defect in a sender")
        self.sent += [item.sop_instance_uid for item in items]
        return {item.instance_id: None for item in items}


def test_a_batch_met_by_an_unexpected_error_is_retried_not_left_running(tmp_path):
    config = parse({"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]},
                    "Courier": {"DatabasePath": str(tmp_path / "c.sqlite"), "Workers": 1,
                                "Retry": {"InitialDelaySeconds": 5},
                                "Routes": [{"Name": "r", "Destinations": ["pacs"]}]}}, str(tmp_path), str(tmp_path))
    store = Store(str(tmp_path / "c.sqlite"))
    ids = store.tasks.enqueue([NewTask("r", "pacs", "Instance", f"i{n}", manifest=(ManifestItem(f"i{n}", f"1.2.{n}", 10),))
                               for n in range(3)])
    sender = BreaksOnce()
    engine = Engine(config, store, None, {"pacs": sender})
    engine.start()
    try:
        wait_until(lambda: sender.calls >= 1 and all(store.tasks.get(i).state == PENDING for i in ids), 10, 0.02,
                   what="the batch back in the queue after the error")
        tasks = [store.tasks.get(i) for i in ids]
        assert [t.attempts for t in tasks] == [1, 1, 1]
        assert all("KeyError" in t.last_error for t in tasks)
        assert not any("a defect in a sender" in t.last_error for t in tasks), "the message may quote a tag value"
        assert store.tasks.busy_slots() == {}, "the destination's slot was freed"
        assert store.tasks.list(state=RUNNING)[0] == 0
        wait_until(lambda: store.tasks.list(state=SUCCESS)[0] == 3, 15, 0.05, what="the retry delivered the three")
    finally:
        engine.stop()
    assert sorted(sender.sent) == ["1.2.0", "1.2.1", "1.2.2"]
    assert [store.tasks.get(i).attempts for i in ids] == [2, 2, 2]
