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
from courier.store.records import ManifestItem, NewTask
from courier.store.store import Store
from factory import write_instances

PROFILE = Profile("p", b"a secret of the trial", frozenset())


class Originals:
    """Orthanc's side: the stored files, and how many were read so far."""

    def __init__(self, files):
        self.files, self.reads = files, 0

    def instance_file(self, instance_id):
        self.reads += 1
        return self.files[instance_id]


class Recorded:
    """A sender's files that note, at each one added, how many originals had been read by then."""

    def __init__(self, originals):
        self.originals, self.added, self.reads_then = originals, [], []

    @property
    def items(self):
        return [item for item, _ in self.added]

    def __len__(self):
        return len(self.added)

    def add(self, item, parts):
        self.reads_then.append(self.originals.reads)
        self.added.append((item, parts))

    def start(self):
        return lambda: {item.instance_id: None for item, _ in self.added}

    def discard(self):
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
