"""Waking the workers: new tasks send one idle worker to claim them, and a worker that claims
something wakes the next, so a page of new tasks is not a claim transaction for every idle
worker (all but one of them finding nothing). Real workers on a real SQLite store; the sender is
a stand-in that acknowledges everything."""
import threading
import time

from courier.config.parse import parse
from courier.engine.workers import Engine
from courier.store.records import SUCCESS, ManifestItem, NewTask
from courier.store.store import Store


class Acknowledges:
    def send(self, items, cancelled):
        time.sleep(0.01)
        return {item.instance_id: None for item in items}

    def send_files(self, files, cancelled):
        return {item.instance_id: None for item, _ in files}


def test_new_tasks_wake_one_worker_and_each_claim_the_next(tmp_path):
    config = parse({"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104]}, "ConcurrentJobs": 4,
                    "Courier": {"DatabasePath": str(tmp_path / "c.sqlite"), "Workers": 4,
                                "Routes": [{"Name": "r", "Destinations": ["pacs"]}]}}, str(tmp_path), str(tmp_path))
    store = Store(str(tmp_path / "c.sqlite"))
    engine = Engine(config, store, None, {"pacs": Acknowledges()})
    claims, lock = [0], threading.Lock()
    claim = store.tasks.claim

    def counted(*args, **kwargs):
        with lock:
            claims[0] += 1
        return claim(*args, **kwargs)
    store.tasks.claim = counted
    engine.start()
    try:
        time.sleep(0.3)                                     # every worker idle, waiting to be woken
        claims[0] = 0
        rounds = 10
        for n in range(rounds):                             # a page of changes every 0.1 s, as in a burst
            ids = store.tasks.enqueue([NewTask("r", "pacs", "Instance", f"i{n}")])
            store.tasks.save_manifests({ids[0]: [ManifestItem(f"i{n}", f"1.2.{n}", 10)]})
            engine.wake()
            time.sleep(0.1)
        deadline = time.monotonic() + 5
        while store.tasks.list(state=SUCCESS)[0] < rounds and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.tasks.list(state=SUCCESS)[0] == rounds
        # per page: the claim, the one it wakes, the claiming worker's next look and the one it
        # wakes when its batch is done: 40 for 10 pages (measured); waking every idle worker at each
        # wake-up made 80; idle workers also look once a second
        assert claims[0] <= 6 * rounds, claims[0]
    finally:
        engine.stop()
