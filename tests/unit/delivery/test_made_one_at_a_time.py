"""Pseudonymized instances go to where they are sent as each is made, in pieces: a chunk of them is
never all in memory, and the Pixel Data is never joined to its new header in memory (a chunk of 50
joined CT slices took fresh pages each time: 0.25 ms of CPU an instance). Then storescu's scratch
folder holds exactly the bytes the pseudonymizer makes."""
from __future__ import annotations

import os

from courier.config.profiles import Profile
from courier.deid.for_tasks import TaskPseudonymizers
from courier.deid.pseudonymizer import Pseudonymizer
from courier.delivery import dcmtk_store
from courier.delivery.deliver import Deliverer
from courier.delivery.sender import Failed
from courier.store.records import ManifestItem, NewTask
from courier.store.store import Store
from factory import write_instances

PROFILE = Profile("p", b"a secret of the trial", frozenset())


class Originals:
    """Orthanc's side: the stored files, and how many were read so far."""

    def __init__(self, files):
        self.files, self.reads = files, 0

    def instance_file(self, instance_id, size=0):
        self.reads += 1
        return self.files[instance_id]


class Recorded:
    """A sender's files that note, at each one added, how many originals had been read by then."""

    def __init__(self, originals):
        self.originals, self.added, self.reads_then = originals, [], []
        self.ended = None               # "started" or "discarded": each opened files object ends one way


    @property
    def items(self):
        return [item for item, _ in self.added]

    def __len__(self):
        return len(self.added)

    def add(self, item, parts):
        self.reads_then.append(self.originals.reads)
        self.added.append((item, parts))

    def start(self):
        assert self.ended is None
        self.ended = "started"
        return lambda: {item.instance_id: None for item, _ in self.added}

    def discard(self):
        assert self.ended is None
        self.ended = "discarded"
        self.added = []


class Sender:
    def __init__(self, originals):
        self.originals, self.opened = originals, []

    def open_files(self, items, cancelled):
        self.opened.append(Recorded(self.originals))
        return self.opened[-1]

    def send_files(self, files, cancelled):
        raise AssertionError("pseudonymized files go through open_files")


def test_each_pseudonymized_instance_is_handed_over_before_the_next_is_read(tmp_path):
    paths = write_instances(tmp_path / "in", 30, size=64)
    originals = Originals({f"i{n}": path.read_bytes() for n, path in enumerate(paths)})
    store = Store(str(tmp_path / "c.sqlite"))
    store.tasks.enqueue([NewTask("r", "d", "Study", "s1", profile="p")])
    (task,) = store.tasks.claim("w", 1).tasks
    manifest = [ManifestItem(f"i{n}", path.stem, len(originals.files[f"i{n}"])) for n, path in enumerate(paths)]
    sender = Sender(originals)
    pseudonymizer = Pseudonymizer(PROFILE)
    deliverer = Deliverer(store, originals, {"d": sender}, TaskPseudonymizers(store, {"p": pseudonymizer}))
    (delivery,) = deliverer.deliver([task], {task.id: manifest})
    assert delivery.delivered == 30 and delivery.failed == 0
    added = [entry for files in sender.opened for entry in files.added]
    reads_then = [n for files in sender.opened for n in files.reads_then]
    assert len(sender.opened) >= 2 and reads_then == list(range(1, 31))     # one read, one handed over, ...
    for item, parts in added:
        assert len(parts) == 2 and isinstance(parts[1], memoryview)           # header, then the pixels as they came
        assert bytes(parts[1]) in originals.files[item.instance_id]
        assert b"".join(parts) == pseudonymizer.pseudonymize_bytes(originals.files[item.instance_id])[0]


def claimed(store, *profiles):
    store.tasks.enqueue([NewTask(f"r{n}", "d", "Study", f"s{n}", profile=profile) for n, profile in enumerate(profiles)])
    return store.tasks.claim("w", len(profiles)).tasks


def test_a_chunk_whose_every_instance_is_quarantined_gives_its_files_back(tmp_path):
    """Files opened for a chunk (a scratch folder taken) and nothing made: they are discarded,
    never left open (the folder stayed out of reach until the process ended)."""
    paths = write_instances(tmp_path / "in", 25, size=16, modality="US")     # may carry burned-in text
    originals = Originals({f"i{n}": path.read_bytes() for n, path in enumerate(paths)})
    store = Store(str(tmp_path / "c.sqlite"))
    (task,) = claimed(store, "p")
    manifest = [ManifestItem(f"i{n}", path.stem, 100) for n, path in enumerate(paths)]
    sender = Sender(originals)
    deliverer = Deliverer(store, originals, {"d": sender}, TaskPseudonymizers(store, {"p": Pseudonymizer(PROFILE)}))
    (delivery,) = deliverer.deliver([task], {task.id: manifest})
    assert delivery.failed == 25 and not delivery.retriable and "burned-in" in delivery.error
    assert len(sender.opened) >= 2 and all(files.ended == "discarded" for files in sender.opened)


class DownAfterTheFirst:
    """A sender without open_files (its files are kept in memory): the first send finds the
    destination down, so the chunk made meanwhile is not sent."""

    def __init__(self):
        self.sent = []

    def send_files(self, files, cancelled):
        self.sent.append([item.instance_id for item, _ in files])
        return {item.instance_id: Failed("not sent: cancelled", interrupted=True) for item, _ in files}


def test_a_chunk_made_while_the_last_was_cancelled_is_reported_cancelled_not_failed(tmp_path):
    """Two tasks, one chunk each (the 32 MB bound): the second task's chunk, made while the
    first was sent and then not sent, carries the reason the attempt ended, so that the task
    goes back unharmed (interrupted), not as a failed attempt."""
    paths = write_instances(tmp_path / "in", 2, size=16)
    originals = Originals({f"i{n}": path.read_bytes() for n, path in enumerate(paths)})
    store = Store(str(tmp_path / "c.sqlite"))
    first, second = claimed(store, "p", "p")
    manifests = {first.id: [ManifestItem("i0", paths[0].stem, 20 * 2**20)],
                 second.id: [ManifestItem("i1", paths[1].stem, 20 * 2**20)]}
    sender = DownAfterTheFirst()
    deliverer = Deliverer(store, originals, {"d": sender}, TaskPseudonymizers(store, {"p": Pseudonymizer(PROFILE)}))
    deliveries = deliverer.deliver([first, second], manifests)
    assert sender.sent == [["i0"]]
    assert [(d.failed, d.interrupted) for d in deliveries] == [(1, True), (1, True)]
    assert "cancelled" in deliveries[1].error


def test_storescus_folder_holds_the_pieces_one_after_the_other_over_a_longer_last_file(tmp_path):
    dcmtk_store.tidy(0)
    writing = dcmtk_store.Writing()
    folder = writing.folder
    try:
        writing.add(ManifestItem("long", "1.2.3"), (b"x" * 5000,))
        writing.discard()
        again = dcmtk_store.Writing()
        assert again.folder == folder                            # the folder the last batch left
        data = write_instances(tmp_path / "in", 1, size=16)[0].read_bytes()
        again.add(ManifestItem("short", "1.2.4"), (data[:300], memoryview(data)[300:]))
        assert open(os.path.join(folder, "0.dcm"), "rb").read() == data      # the longer leftover cut off
        again.discard()
    finally:
        dcmtk_store.tidy(0)


def test_what_cannot_be_written_to_the_folder_is_kept_and_left_for_the_caller(tmp_path, monkeypatch):
    dcmtk_store.tidy(0)
    monkeypatch.setattr(dcmtk_store, "scratch_root", lambda: str(tmp_path / "missing"))
    writing = dcmtk_store.Writing()
    assert writing.folder is None
    writing.add(ManifestItem("a", "1.2.3"), (b"head", memoryview(b"pixels")))
    batch = writing.start(None, "COURIER", 5, lambda: False)
    assert batch.wait() == set()
    assert [(item.instance_id, data) for item, data in batch.left] == [("a", b"headpixels")]
