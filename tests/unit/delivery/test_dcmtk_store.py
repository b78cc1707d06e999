"""Batches of Courier's own bytes on one association (DCMTK storescu), against a pynetdicom SCP."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from courier.config.nodes import Node
from courier.delivery import dcmtk_store
from courier.store.records import ManifestItem
from factory import write_instances
from harness import free_port
from peers import RecordingScp, Storescp


def items(tmp_path, n):
    files = write_instances(tmp_path / "in", n, size=16)
    return [(ManifestItem(f"id-{k}", path.stem), path.read_bytes()) for k, path in enumerate(files)]


def node_of(scp: "RecordingScp | Storescp") -> Node:
    return Node("scp", "dicom", aet=scp.aet, host="127.0.0.1", port=scp.port)


def mine() -> list[str]:
    """This process's scratch folders."""
    return [p for p in os.listdir(dcmtk_store.scratch_root()) if p.startswith(f"{dcmtk_store.PREFIX}{os.getpid()}-")]


def test_a_batch_goes_on_one_association_and_a_refused_instance_is_not_counted(tmp_path):
    dcmtk_store.tidy(0)
    files = items(tmp_path, 6)
    refused = files[2][0].sop_instance_uid
    scp = RecordingScp("BATCH", refuse=lambda ds: 0xA700 if ds.SOPInstanceUID == refused else None)
    try:
        done = dcmtk_store.store_batch(node_of(scp), "COURIER", files, 10, lambda: False)
        assert done == {item.instance_id for item, _ in files} - {"id-2"}
        assert scp.associations == 1
        assert scp.uids() == {item.sop_instance_uid for item, _ in files} - {refused}
        assert set(scp.offered) == {item.sop_instance_uid for item, _ in files}   # no halt at the refusal
    finally:
        scp.close()
    assert len(mine()) == 1                # kept for the next batch
    assert dcmtk_store.tidy(60) == 0 and len(mine()) == 1
    assert dcmtk_store.tidy(0) == 1 and mine() == []


def test_the_next_batch_overwrites_the_last_ones_files_and_never_counts_its_acknowledgments(tmp_path):
    """A folder is reused: the last batch's files (renamed .done by storescu) are overwritten, the
    ones beyond the new batch removed; an instance is acknowledged only by this batch's storescu."""
    dcmtk_store.tidy(0)
    first = items(tmp_path / "first", 6)
    second = [(ManifestItem(f"second-{k}", f"uid-{k}"), data[:200]) for k, (_, data) in enumerate(first[:3])]
    scp = RecordingScp("REUSE")
    try:
        assert dcmtk_store.store_batch(node_of(scp), "COURIER", first, 10, lambda: False) == {i.instance_id for i, _ in first}
        [folder] = mine()
        assert sorted(os.listdir(os.path.join(dcmtk_store.scratch_root(), folder))) == [f"{n}.dcm.done" for n in range(6)]
        down = Node("down", "dicom", aet="DOWN", host="127.0.0.1", port=free_port())
        assert dcmtk_store.store_batch(down, "COURIER", second, 5, lambda: False) == set()   # not the first's .done
        assert mine() == [folder]
        path = os.path.join(dcmtk_store.scratch_root(), folder)
        assert sorted(os.listdir(path)) == ["0.dcm", "1.dcm", "2.dcm"]
        assert [open(os.path.join(path, f"{n}.dcm"), "rb").read() for n in range(3)] == [d for _, d in second]
        third = items(tmp_path / "third", 2)
        assert dcmtk_store.store_batch(node_of(scp), "COURIER", third, 10, lambda: False) == {i.instance_id for i, _ in third}
        assert scp.uids() >= {i.sop_instance_uid for i, _ in third} and mine() == [folder]
        assert sorted(os.listdir(path)) == ["0.dcm.done", "1.dcm.done"]
    finally:
        scp.close()
        dcmtk_store.tidy(0)
    assert mine() == []


def test_a_destination_that_is_down_acknowledges_nothing(tmp_path):
    node = Node("down", "dicom", aet="DOWN", host="127.0.0.1", port=free_port())
    assert dcmtk_store.store_batch(node, "COURIER", items(tmp_path, 3), 5, lambda: False) == set()


def test_a_cancel_ends_the_batch_and_only_acknowledged_instances_count(tmp_path):
    files = items(tmp_path, 10)
    scp = RecordingScp("SLOW", delay=0.3)
    started = time.monotonic()
    try:
        done = dcmtk_store.store_batch(node_of(scp), "COURIER", files, 10, lambda: time.monotonic() - started > 1)
        assert time.monotonic() - started < 2.5
        assert len(done) < len(files)
        acknowledged = {item.sop_instance_uid for item, _ in files if item.instance_id in done}
        assert acknowledged <= scp.uids()
    finally:
        scp.close()


def test_leftovers_of_a_dead_router_are_removed_and_a_live_ones_kept(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / f"{dcmtk_store.PREFIX}{gone.pid}-abc").mkdir()
    (tmp_path / f"{dcmtk_store.PREFIX}{gone.pid}-abc" / "0.dcm").write_bytes(b"x")
    (tmp_path / f"{dcmtk_store.PREFIX}{os.getppid()}-def").mkdir()
    (tmp_path / "unrelated").mkdir()
    assert dcmtk_store.remove_leftovers(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{dcmtk_store.PREFIX}{os.getppid()}-def", "unrelated"])


def test_the_command_names_both_aets_and_the_timeouts(tmp_path):
    node = Node("n", "dicom", aet="PACS", host="10.0.0.1", port=104)
    args = dcmtk_store.command(node, "COURIER", 7.4, ["a.dcm"])
    assert args[:3] == ["storescu", "-nh", "+rn"]
    assert args[args.index("-aet") + 1] == "COURIER" and args[args.index("-aec") + 1] == "PACS"
    assert args[args.index("-td") + 1] == "7"
    assert args[-3:] == ["10.0.0.1", "104", "a.dcm"]


def test_a_scratch_folder_that_cannot_be_written_means_nothing_acknowledged_not_an_error(tmp_path, monkeypatch):
    dcmtk_store.tidy(0)                    # no folder kept from another test
    monkeypatch.setattr(dcmtk_store, "scratch_root", lambda: str(tmp_path / "missing"))
    scp = RecordingScp("ROOM")
    try:
        assert dcmtk_store.store_batch(node_of(scp), "COURIER", items(tmp_path, 3), 5, lambda: False) == set()
        assert scp.associations == 0
    finally:
        scp.close()


def test_a_wait_ended_by_an_error_kills_storescu_before_its_folder_is_reused(tmp_path):
    """`cancelled()` asks the store; when that raises, the storescu still sending is killed before
    its folder goes back: the next batch's files are never read or renamed by the last one's run."""
    dcmtk_store.tidy(0)
    scp = RecordingScp("SLOWER", delay=0.3)

    def store_failed():
        raise RuntimeError("database is locked")
    try:
        batch = dcmtk_store.start_batch(node_of(scp), "COURIER", items(tmp_path, 10), 10, store_failed)
        with pytest.raises(RuntimeError):
            batch.wait()
        assert batch.process.poll() is not None              # killed, not left sending
        assert batch.wait() == set()                         # and nothing counted as acknowledged
    finally:
        scp.close()
        dcmtk_store.tidy(0)


def test_asking_a_batch_again_gives_its_own_answer_not_the_next_batchs(tmp_path):
    dcmtk_store.tidy(0)
    scp = RecordingScp("AGAIN")
    try:
        files = items(tmp_path / "a", 3)
        first = dcmtk_store.start_batch(node_of(scp), "COURIER", files, 10, lambda: False)
        done = first.wait()
        assert done == {i.instance_id for i, _ in files}
        down = Node("down", "dicom", aet="DOWN", host="127.0.0.1", port=free_port())
        assert dcmtk_store.store_batch(down, "COURIER", items(tmp_path / "b", 3), 5, lambda: False) == set()
        assert first.wait() == done                          # the folder is the second batch's now
    finally:
        scp.close()
        dcmtk_store.tidy(0)


def rich_dataset(patient: str):
    """A CT with what a dictionary could matter for: private elements of several VRs, nested
    sequences with private items, an empty sequence."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from factory import make_instance
    ds = make_instance(patient_id=patient)
    ds.add_new(0x00091010, "LO", "SOME CREATOR")
    ds.add_new(0x00091011, "LO", "a private value")
    ds.add_new(0x00091012, "US", 7)
    ds.add_new(0x00091013, "OB", b"\x01\x02\x03\x04")
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "X", "DCM"
    inner.add_new(0x00111010, "LO", "ANOTHER CREATOR")
    inner.add_new(0x00111011, "SS", -3)
    ds.ProcedureCodeSequence = Sequence([inner, Dataset()])
    ds.add_new(0x00400275, "SQ", Sequence([inner]))
    ds.add_new(0x0040A730, "SQ", Sequence([]))
    return ds


def rich_files(tmp_path) -> dict[str, tuple]:
    """name -> (ManifestItem, bytes): explicit VR little endian, JPEG baseline (encapsulated), implicit VR."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
    out = {}
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, syntax in (("explicit", ExplicitVRLittleEndian), ("jpeg", JPEGBaseline8Bit),
                         ("implicit", ImplicitVRLittleEndian)):
        ds = rich_dataset(name)
        ds.file_meta.TransferSyntaxUID = syntax
        if syntax == JPEGBaseline8Bit:
            ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 100 + b"\xff\xd9", b"\xff\xd8" + b"\x11" * 50 + b"\xff\xd9"])
            ds["PixelData"].VR = "OB"
            ds.NumberOfFrames = 2
        path = tmp_path / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
        out[name] = (ManifestItem(name, ds.SOPInstanceUID), path.read_bytes())
    return out


def test_the_transfer_syntax_is_read_from_the_file_meta(tmp_path):
    files = rich_files(tmp_path)
    assert {name: dcmtk_store.transfer_syntax_of(data) for name, (_, data) in files.items()} == {
        "explicit": "1.2.840.10008.1.2.1", "jpeg": "1.2.840.10008.1.2.4.50", "implicit": "1.2.840.10008.1.2"}
    assert dcmtk_store.transfer_syntax_of(b"\0" * 300) is None
    assert dcmtk_store.transfer_syntax_of(files["explicit"][1][:140]) is None


@pytest.mark.parametrize("accepts", ["", "+xi", "+xy"])     # explicit preferred; implicit only (storescu converts); JPEG too
def test_explicit_vr_files_sent_with_the_small_dictionary_arrive_as_with_dcmtks_own(tmp_path, accepts):
    """The batches storescu sends with only the command and file meta groups for a dictionary
    reach a real DCMTK storescp byte for byte as storescu with DCMTK's full dictionary sends them,
    whichever transfer syntax the destination accepts; a batch of JPEG files is proposed in JPEG
    too (before, storescu could not send it: no codec to decompress); a batch with an implicit VR
    file gets the full dictionary, and arrives."""
    dcmtk_store.tidy(0)
    files = rich_files(tmp_path / "files")
    def syntaxes(*names):
        return {dcmtk_store.transfer_syntax_of(files[name][1]) for name in names}
    assert dcmtk_store.environment(syntaxes("explicit", "jpeg"))["DCMDICTPATH"] == dcmtk_store.SMALL_DICTIONARY
    assert dcmtk_store.environment(syntaxes(*files)).get("DCMDICTPATH") == os.environ.get("DCMDICTPATH")
    assert dcmtk_store.proposal(syntaxes("jpeg")) == ["-xy"]
    assert dcmtk_store.proposal(syntaxes("jpeg", "explicit")) == []      # uncompressed files go as they are
    reference, courier = Storescp(tmp_path / "reference", accepts), Storescp(tmp_path / "courier", accepts)
    try:
        full = {k: v for k, v in os.environ.items() if k != "DCMDICTPATH"}
        for name, propose in (("explicit", []), ("jpeg", ["-xy"])):
            subprocess.run(["storescu", "-nh", "-q", *propose, "-aet", "COURIER", "-aec", "ANY-SCP", "127.0.0.1",
                            str(reference.port), str(tmp_path / "files" / f"{name}.dcm")], env=full, timeout=60)
        done = dcmtk_store.store_batch(node_of(courier), "COURIER", [files["explicit"]], 10, lambda: False)
        done |= dcmtk_store.store_batch(node_of(courier), "COURIER", [files["jpeg"]], 10, lambda: False)
        expected = {"explicit", "jpeg"} if accepts == "+xy" else {"explicit"}     # JPEG only where accepted
        assert done == expected
        assert len(reference.received()) == len(expected)
        assert courier.received() == reference.received()
        with_implicit = dcmtk_store.store_batch(node_of(courier), "COURIER", [files["implicit"], files["explicit"]],
                                                10, lambda: False)
        assert with_implicit == {"implicit", "explicit"}
    finally:
        reference.close()
        courier.close()
        dcmtk_store.tidy(0)


@pytest.mark.parametrize("setting, off", [(None, True), ("1", True), ("0", False)])
def test_storescu_has_nagles_algorithm_off_unless_the_environment_says_otherwise(tmp_path, monkeypatch, setting, off):
    """DCMTK keeps Nagle's algorithm on unless TCP_NODELAY is set (config.dcmtk_env): the storescu
    Courier starts has it off when the router's environment does not set it, and keeps what an
    environment that sets it says (read from storescu's own socket, at the destination's end)."""
    if setting is None:
        monkeypatch.delenv("TCP_NODELAY", raising=False)
    else:
        monkeypatch.setenv("TCP_NODELAY", setting)
    dcmtk_store.tidy(0)
    files = items(tmp_path, 3)
    scp = RecordingScp("NAGLE", nodelay=True)
    try:
        done = dcmtk_store.store_batch(node_of(scp), "COURIER", files, 10, lambda: False)
        assert len(done) == 3 and scp.peers_nodelay == [off]
    finally:
        scp.close()
        dcmtk_store.tidy(0)
