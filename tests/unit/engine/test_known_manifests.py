"""An Instance task made by the change follower comes with its manifest (the follower read the
instance's SOP Instance UID and size for the page already): the store keeps it with the task, and
the worker that claims the task sends it without asking Orthanc to list it again. Real workers on
a real SQLite store, with no Orthanc at all (the engine's REST client is None: a listing would
fail); the sender is a stand-in that acknowledges everything."""
from courier.config.parse import parse
from courier.engine.workers import Engine
from courier.store.records import SUCCESS, ManifestItem, NewTask
from courier.store.store import Store
from harness import wait_until


class Acknowledges:
    def __init__(self):
        self.sent = []

    def send(self, items, cancelled):
        self.sent += [item.sop_instance_uid for item in items]
        return {item.instance_id: None for item in items}

    def send_files(self, files, cancelled):
        return {item.instance_id: None for item, _ in files}


def test_a_task_made_with_its_manifest_is_sent_without_listing_it(tmp_path):
    config = parse({"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]},
                    "Courier": {"DatabasePath": str(tmp_path / "c.sqlite"), "Workers": 2,
                                "Routes": [{"Name": "r", "Destinations": ["pacs"]}]}}, str(tmp_path), str(tmp_path))
    store = Store(str(tmp_path / "c.sqlite"))
    ids = store.tasks.enqueue([NewTask("r", "pacs", "Instance", f"i{n}", manifest=(ManifestItem(f"i{n}", f"1.2.{n}", 10),))
                               for n in range(3)] + [NewTask("r", "pacs", "Instance", "unlisted")])
    assert store.tasks.manifests(ids) == {ids[0]: [ManifestItem("i0", "1.2.0", 10)],
                                          ids[1]: [ManifestItem("i1", "1.2.1", 10)],
                                          ids[2]: [ManifestItem("i2", "1.2.2", 10)], ids[3]: []}
    assert [store.tasks.get(i).expected for i in ids] == [1, 1, 1, None]
    store.tasks.set_state(ids[3], ("PENDING",), "CANCELED", "test", "task-cancelled")   # this one would need Orthanc
    sender = Acknowledges()
    engine = Engine(config, store, None, {"pacs": sender})
    engine.start()
    try:
        wait_until(lambda: store.tasks.list(state=SUCCESS)[0] == 3, 10, 0.02, what="the three tasks sent")
    finally:
        engine.stop()
    assert sorted(sender.sent) == ["1.2.0", "1.2.1", "1.2.2"]
    assert [(store.tasks.get(i).delivered, store.tasks.get(i).bytes) for i in ids[:3]] == [(1, 10)] * 3
