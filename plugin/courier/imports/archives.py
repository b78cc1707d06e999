"""Unpacking uploaded archives safely: ZIP, TAR (plain, gzip, bzip2, xz) and 7z.

What an archive may hold is bounded before anything is extracted: at most MAX_ENTRIES files
and MAX_TOTAL bytes unpacked (from the sizes the archive declares, checked again while reading,
against zip bombs); links, devices and names that would leave the archive (absolute, "..") are
skipped with the reason. Nothing is written to disk: members come back as (name, bytes).
"""
from __future__ import annotations

import io
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Optional

MAX_ENTRIES = 20000
MAX_TOTAL = 4 * 1024 ** 3          # 4 GiB unpacked
MAX_MEMBER = 1024 ** 3             # 1 GiB for one file
KINDS = ("zip", "tar", "7z")


class ArchiveError(Exception):
    """The archive cannot be read, or asks for more than the limits."""


@dataclass
class Unpacked:
    members: list[tuple[str, bytes]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)     # (name, why)


def kind_of(data: bytes, name: str = "") -> Optional[str]:
    """zip, tar or 7z by content (a name's suffix is not trusted); None: not an archive."""
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "zip"
    if data[:6] == b"7z\xbc\xaf\x27\x1c":
        return "7z"
    if data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00" or data[257:262] == b"ustar":
        return "tar"
    return None


def safe_name(name: str) -> Optional[str]:
    """The member's path inside the archive, normalised; None if it would leave it."""
    clean = posixpath.normpath(name.replace("\\", "/"))
    if clean.startswith("/") or clean == ".." or clean.startswith("../") or clean in ("", "."):
        return None
    return clean


def _budget(sizes: list[int]) -> None:
    if len(sizes) > MAX_ENTRIES:
        raise ArchiveError(f"more than {MAX_ENTRIES} files in the archive")
    if sum(sizes) > MAX_TOTAL:
        raise ArchiveError(f"the archive unpacks to more than {MAX_TOTAL // 1024 ** 3} GiB")
    if sizes and max(sizes) > MAX_MEMBER:
        raise ArchiveError(f"a file in the archive is larger than {MAX_MEMBER // 1024 ** 3} GiB")


def _budget_so_far(entries: int, total: int, size: int) -> None:
    if entries > MAX_ENTRIES:
        raise ArchiveError(f"more than {MAX_ENTRIES} files in the archive")
    if total > MAX_TOTAL:
        raise ArchiveError(f"the archive unpacks to more than {MAX_TOTAL // 1024 ** 3} GiB")
    if size > MAX_MEMBER:
        raise ArchiveError(f"a file in the archive is larger than {MAX_MEMBER // 1024 ** 3} GiB")


def _read_limited(stream, declared: int) -> bytes:
    data = stream.read(min(declared, MAX_MEMBER) + 1)
    if len(data) > declared:
        raise ArchiveError("a member is larger than the archive declares (a zip bomb?)")
    return data


def unpack(data: bytes, kind: str) -> Unpacked:
    out = Unpacked()
    try:
        if kind == "zip":
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                infos = [i for i in archive.infolist() if not i.is_dir()]
                _budget([i.file_size for i in infos])
                for info in infos:
                    name = safe_name(info.filename)
                    if name is None:
                        out.skipped.append((info.filename, "a path outside the archive"))
                    elif (info.external_attr >> 16) & 0o170000 == 0o120000:
                        out.skipped.append((info.filename, "a symbolic link"))
                    else:
                        with archive.open(info) as stream:
                            out.members.append((name, _read_limited(stream, info.file_size)))
        elif kind == "tar":
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
                seen, total = 0, 0
                for member in archive:              # one header at a time: a tar of millions of tiny
                    seen += 1                       # entries is refused without reading them all
                    total += member.size if member.isfile() else 0
                    _budget_so_far(seen, total, member.size if member.isfile() else 0)
                    if member.isdir():
                        continue
                    name = safe_name(member.name)
                    if not member.isfile():
                        out.skipped.append((member.name, "a link or a device, not a file"))
                    elif name is None:
                        out.skipped.append((member.name, "a path outside the archive"))
                    else:
                        out.members.append((name, _read_limited(archive.extractfile(member), member.size)))
        elif kind == "7z":
            import py7zr
            with py7zr.SevenZipFile(io.BytesIO(data)) as archive:
                infos = [i for i in archive.list() if not i.is_directory]
                _budget([i.uncompressed for i in infos])
                wanted = []
                for info in infos:
                    name = safe_name(info.filename)
                    if name is None:
                        out.skipped.append((info.filename, "a path outside the archive"))
                    elif getattr(info, "is_symlink", False):
                        out.skipped.append((info.filename, "a symbolic link"))
                    else:
                        wanted.append(info.filename)
                if wanted:
                    from py7zr.io import BytesIOFactory
                    factory = BytesIOFactory(MAX_MEMBER)          # in memory, bounded: nothing written to disk
                    archive.extract(targets=wanted, factory=factory)
                    for name in wanted:
                        product = factory.products.get(name)
                        if product is not None:
                            product.seek(0)
                            out.members.append((safe_name(name), product.read()))
        else:
            raise ArchiveError(f"unknown archive kind {kind!r}")
    except ArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or encrypted archive
        raise ArchiveError(f"cannot read the {kind} archive: {type(exc).__name__}: {exc}") from None
    return out
