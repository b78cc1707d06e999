"""How what a delivery sends is cut into chunks (one association each), and when a chunk of
Courier's own bytes is worth a storescu run."""
from courier.delivery import dcmtk_store
from courier.delivery.deliver import CHUNK_BYTES, chunks
from courier.store.records import ManifestItem


def entries(count, size=500_000):
    return [(f"i{n}", (ManifestItem(f"i{n}", f"1.2.{n}", size), None)) for n in range(count)]


def sizes(count, one_task, courier_bytes=False, size=500_000):
    return [len(c) for c in chunks(entries(count, size), one_task, courier_bytes)]


def test_routed_batches_go_whole_up_to_100():
    assert sizes(50, one_task=False) == [50] and sizes(250, one_task=False) == [100, 100, 50]


def test_a_study_sent_by_orthanc_goes_in_about_five_chunks_for_its_progress():
    assert sizes(100, one_task=True) == [20] * 5 and sizes(30, one_task=True) == [10, 10, 10]


def test_a_pseudonymized_study_goes_in_two_chunks_or_more_each_within_the_memory_bound():
    assert sizes(100, True, courier_bytes=True) == [50, 50]           # the next made while the last is sent
    assert sizes(15, True, courier_bytes=True) == [15]                # too few for two storescu runs
    assert sizes(1000, True, courier_bytes=True, size=100_000) == [100] * 10
    assert sizes(1000, True, courier_bytes=True)[0] * 500_000 <= CHUNK_BYTES     # 64 CT slices of 0.5 MB
    big = sizes(20, True, courier_bytes=True, size=10 * 2**20)        # mammograms: the 32 MB bound decides
    assert max(big) * 10 * 2**20 <= CHUNK_BYTES and sum(big) == 20


def test_a_chunk_is_worth_storescu_from_ten_instances_or_eight_megabytes():
    assert not dcmtk_store.worth_a_batch(dcmtk_store.SMALLEST - 1, 1000 * (dcmtk_store.SMALLEST - 1))
    assert dcmtk_store.worth_a_batch(dcmtk_store.SMALLEST, 1000 * dcmtk_store.SMALLEST)
    assert dcmtk_store.worth_a_batch(1, dcmtk_store.SMALLEST_BYTES)


class Acknowledges:
    def __init__(self):
        self.chunks = []

    def send(self, items, cancelled):
        self.chunks.append(len(items))
        return {item.instance_id: None for item in items}


def test_progress_is_heard_after_each_chunk_but_the_last_whose_outcome_is_recorded_next(tmp_path):
    from courier.delivery.deliver import Deliverer
    from courier.store.records import NewTask
    from courier.store.store import Store
    store = Store(str(tmp_path / "c.sqlite"))
    store.tasks.enqueue([NewTask("r", "d", "Study", "s1")])
    (task,) = store.tasks.claim("w", 1).tasks
    manifest = [ManifestItem(f"i{n}", f"1.2.{n}", 10) for n in range(100)]
    sender, heard = Acknowledges(), []
    (delivery,) = Deliverer(store, None, {"d": sender}, None).deliver([task], {task.id: manifest},
                                                                      progress=lambda done: heard.append(done))
    assert sender.chunks == [20] * 5
    assert [len(done[task.id]) for done in heard] == [20] * 4      # the fifth comes with the outcome
    assert (delivery.failed, len(delivery.newly_delivered), delivery.delivered) == (0, 100, 100)
