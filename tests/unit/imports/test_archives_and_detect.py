"""Pure parts of imports: DICOM by content, and archives unpacked within limits."""
import io
import tarfile
import zipfile

import py7zr
import pytest

from courier.imports import archives
from courier.imports.archives import ArchiveError, kind_of, safe_name, unpack
from courier.imports.detect import detect
from factory import make_instance


def dicom_bytes(**tags):
    data = io.BytesIO()
    make_instance(**tags).save_as(data, enforce_file_format=True)
    return data.getvalue()


def zipped(members):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return data.getvalue()


def test_dicom_is_told_by_content_with_or_without_preamble():
    data = dicom_bytes(patient_id="D1")
    found = detect(data)
    assert found.dicom and found.patient_id == "D1" and found.sop_uid
    assert detect(data[132:]).dicom                                  # no preamble, no magic: still a dataset
    assert detect(b"just some text, long enough").reason.startswith("not DICOM")
    assert detect(data[:200]).reason == "unreadable: no SOP Instance UID"      # the magic, then nothing
    assert detect(b"").reason == "not DICOM: too short"


def test_the_instance_id_is_orthancs():
    found = detect(dicom_bytes())
    import hashlib
    key = "|".join((found.patient_id, found.study_uid, found.series_uid, found.sop_uid))
    digest = hashlib.sha1(key.encode()).hexdigest()
    assert found.instance_id == "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def test_archive_kinds_by_content_not_by_name():
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as archive:
        info = tarfile.TarInfo("a.dcm")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    seven = io.BytesIO()
    with py7zr.SevenZipFile(seven, "w") as archive:
        archive.writestr(b"x", "a")
    assert kind_of(zipped([("a", b"x")])) == "zip" and kind_of(tar.getvalue()) == "tar"
    assert kind_of(seven.getvalue()) == "7z" and kind_of(dicom_bytes()) is None


@pytest.mark.parametrize("name, safe", [("a/b.dcm", "a/b.dcm"), ("./a//b", "a/b"), ("../x", None), ("a/../../x", None),
                                        ("/etc/passwd", None), ("a\\..\\..\\x", None), ("", None)])
def test_names_that_leave_the_archive_are_refused(name, safe):
    assert safe_name(name) == safe


def test_escaping_names_and_links_are_skipped_with_the_reason():
    out = unpack(zipped([("ok/a.dcm", b"1"), ("../../evil", b"2")]), "zip")
    assert out.members == [("ok/a.dcm", b"1")] and out.skipped == [("../../evil", "a path outside the archive")]
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        archive.addfile(link)
        device = tarfile.TarInfo("dev")
        device.type = tarfile.CHRTYPE
        archive.addfile(device)
    assert [why for _, why in unpack(tar.getvalue(), "tar").skipped] == ["a link or a device, not a file"] * 2


def test_a_zip_bomb_is_refused_from_its_declared_sizes_before_anything_is_read(monkeypatch):
    bomb = zipped([(f"layer{n}", b"\0" * 2_000_000) for n in range(3)])           # 6 MB unpacked, a few KB packed
    assert len(bomb) < 50_000
    monkeypatch.setattr(archives, "MAX_TOTAL", 5_000_000)
    with pytest.raises(ArchiveError, match="unpacks to more than"):
        unpack(bomb, "zip")
    monkeypatch.setattr(archives, "MAX_TOTAL", 10 ** 9)
    monkeypatch.setattr(archives, "MAX_MEMBER", 1_000_000)
    with pytest.raises(ArchiveError, match="larger than"):
        unpack(bomb, "zip")
    monkeypatch.setattr(archives, "MAX_MEMBER", 10 ** 9)
    monkeypatch.setattr(archives, "MAX_ENTRIES", 2)
    with pytest.raises(ArchiveError, match="more than 2 files"):
        unpack(bomb, "zip")


def test_a_member_larger_than_it_declares_is_refused():
    data = bytearray(zipped([("a", b"\0" * 100_000)]))
    central = data.rfind(b"PK\x01\x02")                           # the central directory's declared size: 10 bytes
    data[central + 24:central + 28] = (10).to_bytes(4, "little")
    with pytest.raises(ArchiveError):
        unpack(bytes(data), "zip")


def test_a_damaged_archive_is_an_archive_error():
    with pytest.raises(ArchiveError, match="cannot read the zip archive"):
        unpack(zipped([("a", b"x")])[:30], "zip")


def test_a_tar_with_too_many_entries_is_refused_while_it_is_read(monkeypatch):
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as archive:
        for n in range(50):
            info = tarfile.TarInfo(f"f{n}")
            archive.addfile(info, io.BytesIO(b""))
    monkeypatch.setattr(archives, "MAX_ENTRIES", 10)
    with pytest.raises(ArchiveError, match="more than 10 files"):
        unpack(tar.getvalue(), "tar")
