"""What storescu's batches leave in RAM goes once nobody uses it: a scratch folder kept for the
next batch (courier.delivery.dcmtk_store.Folders) is removed by an idle worker after KEEP_SECONDS,
and by the router's stop. Real workers on a real SQLite store, a real folder in /dev/shm."""
import os

from test_wake_ups import engine_of

from courier.delivery import dcmtk_store
from harness import wait_until


def kept_folder() -> str:
    """A folder as a batch gives it back: with a file in it."""
    folder, _ = dcmtk_store.FOLDERS.take()
    with open(os.path.join(folder, "0.dcm.done"), "wb") as out:
        out.write(b"x" * 1000)
    dcmtk_store.FOLDERS.give_back(folder, 1)
    return folder


def test_an_idle_worker_removes_a_folder_unused_for_keep_seconds(tmp_path, monkeypatch):
    dcmtk_store.tidy(0)
    monkeypatch.setattr(dcmtk_store, "KEEP_SECONDS", 0.3)
    engine, _ = engine_of(tmp_path, 1)
    folder = kept_folder()
    assert os.path.isdir(folder)
    engine.start()
    try:
        wait_until(lambda: not os.path.exists(folder), 3, 0.05, what="the idle worker's tidy")   # it looks every 1 s
    finally:
        engine.stop()


def test_the_routers_stop_removes_what_its_batches_kept(tmp_path):
    dcmtk_store.tidy(0)
    engine, _ = engine_of(tmp_path, 1)
    engine.start()
    folder = kept_folder()               # freshly given back: an idle worker keeps it for 10 s
    dcmtk_store.tidy()
    assert os.path.isdir(folder)
    engine.stop()
    assert not os.path.exists(folder)
