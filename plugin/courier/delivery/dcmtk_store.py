"""Courier's own bytes (pseudonymized instances) to a DICOM node, many on one association.

Orthanc's `/modalities/{id}/store-straight` opens one association per instance, and measured on
this machine an association costs the destination about 3 ms of CPU and the router about 1 ms
more than the C-STORE itself (512x512 CT: destination 8.2 ms per instance one association each,
5.4 ms on one association for 50). So a batch is written to a private folder in RAM (/dev/shm)
as it is made, one instance at a time (`Writing`: its header and Pixel Data written one after the
other, never joined in memory), and sent by DCMTK's `storescu` on one association: C++, no GIL
held while the worker waits, and `+rn` renames each file `.done` once the destination
acknowledged it, which is the per-instance answer read back here (no log parsing). `-nh`: a
refused instance does not end the batch. Starting storescu costs about 28 ms of CPU, so only
batches of SMALLEST or more go this way.

The folders are kept and reused (`Folders`): a batch overwrites the files the last one left, and
tmpfs then keeps the pages it already holds. Measured on 0.5 MB files: 0.07 ms a file overwritten
against 0.45 ms a new file (the kernel zeroes every new page, and frees it again at the end). A
folder goes back only once its storescu has ended (Batch), and one nobody used for KEEP_SECONDS is
removed (`tidy`, by workers when idle, at the router's stop and at exit), so what a burst left in
RAM goes soon after it.

storescu loads DCMTK's data dictionary at every start (dicom.dic and private.dic: about 8 of its
17 ms of CPU). It needs one for its DIMSE messages, but a file in an explicit VR transfer syntax
names the VR of every element, so for a batch of such files (`small_dictionary_will_do`) it is
given only the command and file meta groups (data/dimse.dic). Files in implicit VR, and the
transfer syntaxes not tested that way (big endian, deflated), get DCMTK's own dictionary, which
they need if storescu converts them (tested: the same bytes reach the destination either way,
whichever uncompressed transfer syntax it accepts).

This is only a faster first attempt: the caller sends everything not acknowledged (refused, no
presentation context, destination down, cancelled, storescu missing; `Batch.left`, read back from
the folder before it goes) through store-straight one instance at a time, whose answers and
errors are Orthanc's, as before. An instance is never
reported delivered unless the destination acknowledged it.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from courier.config import dcmtk_env
from courier.config.nodes import Node
from courier.deid.pixel_tail import joined
from courier.delivery.sender import Check, FileItem, filled
from courier.store.records import ManifestItem

PREFIX = "courier-send-"
SMALLEST = 10     # starting storescu costs ~28 ms of the router's CPU (loading its data dictionary), then
                  # ~1.1 ms an instance, against ~2.6 ms for store-straight; but each store-straight is an
                  # association, ~2.3 ms more of the destination's CPU: from about 8 on, storescu costs less
                  # in all (measured on 512x512 CT), and spares the destination an association storm
SMALLEST_BYTES = 8 * 2**20
Buffer = Union[bytes, memoryview]
KEEP_SECONDS = 10.0        # a scratch folder unused this long is removed with its files


def available() -> bool:
    return shutil.which("storescu") is not None


def scratch_root() -> str:
    """RAM when the machine has it (the pseudonymized bytes never touch a disk), else the temp dir."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def remove_leftovers(root: Optional[str] = None) -> int:
    """Folders left by a router killed mid-batch (their process is gone): removed at start-up."""
    removed = 0
    for folder in Path(root or scratch_root()).glob(PREFIX + "*"):
        try:
            pid = int(folder.name[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class Folders:
    """Scratch folders of this process, each used by one batch at a time, kept between batches:
    `take()` the most recently used free one (or a new one), `give_back()` once its batch was
    sent, `tidy()` what has been free for longer than KEEP_SECONDS."""

    def __init__(self) -> None:
        self._free: list[tuple[float, str, int]] = []   # (freed at, folder, files in it), newest last
        self._lock = threading.Lock()

    def take(self) -> tuple[str, int]:
        """A folder and how many files (0.dcm, 1.dcm, ...) its last batch left in it."""
        with self._lock:
            if self._free:
                _, folder, count = self._free.pop()
                if os.path.isdir(folder):
                    return folder, count
        return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=scratch_root()), 0

    def give_back(self, folder: str, count: int) -> None:
        with self._lock:
            self._free.append((time.monotonic(), folder, count))
        self.tidy()

    def tidy(self, keep: Optional[float] = None) -> int:
        """Remove the folders free for longer than `keep` seconds (KEEP_SECONDS); how many were removed."""
        keep = KEEP_SECONDS if keep is None else keep
        now = time.monotonic()
        with self._lock:
            old = [f for f in self._free if now - f[0] >= keep]
            self._free = [f for f in self._free if now - f[0] < keep]
        for _, folder, _ in old:
            shutil.rmtree(folder, ignore_errors=True)
        return len(old)


FOLDERS = Folders()
atexit.register(FOLDERS.tidy, 0)    # what a batch gave back after the router's stop (its worker was still busy)


def tidy(keep: Optional[float] = None) -> int:
    """What batches left in RAM, once nobody has used it for `keep` seconds."""
    return FOLDERS.tidy(keep)


def _write(path: str, parts: Sequence[Buffer]) -> None:
    """`path` holds the parts one after the other, in the file a last batch left there if any (as
    it is, or renamed .done or .bad by storescu): after this, neither `path.done` nor `path.bad`
    exists, so an acknowledgment is never one of the last batch's. Written with writev: the
    parts (a new header, the Pixel Data as it came) are never joined in memory first."""
    for leftover in (path + ".done", path + ".bad"):
        if os.path.exists(leftover):
            os.replace(leftover, path)
    views = [memoryview(part) for part in parts if len(part)]
    total = sum(view.nbytes for view in views)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while views:
            written = os.writev(descriptor, views)
            while views and written >= views[0].nbytes:
                written -= views[0].nbytes
                views.pop(0)
            if views:
                views[0] = views[0][written:]
        os.ftruncate(descriptor, total)
    finally:
        os.close(descriptor)


def _remove_from(folder: str, first: int, count: int) -> None:
    """Files first..count-1 a longer last batch left (and their renamed forms)."""
    for n in range(first, count):
        for suffix in ("", ".done", ".bad"):
            try:
                os.remove(os.path.join(folder, f"{n}.dcm{suffix}"))
            except FileNotFoundError:
                pass


SMALL_DICTIONARY = str(Path(__file__).resolve().parent / "data" / "dimse.dic")
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
RLE = "1.2.840.10008.1.2.5"
ENCAPSULATED_FAMILY = "1.2.840.10008.1.2.4."        # JPEG, JPEG-LS, JPEG 2000, MPEG, HEVC, HTJ2K...
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def transfer_syntax_of(data: bytes) -> Optional[str]:
    """The Transfer Syntax UID in a DICOM file's meta information (explicit VR little endian after
    the preamble), or None when the bytes do not have one there."""
    if data[128:132] != b"DICM":
        return None
    offset = 132
    while offset + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        if group != 2:
            return None
        vr = data[offset + 4:offset + 6]
        if vr in _LONG_VRS:
            if offset + 12 > len(data):
                return None
            (length,), start = struct.unpack_from("<I", data, offset + 8), offset + 12
        else:
            (length,), start = struct.unpack_from("<H", data, offset + 6), offset + 8
        if element == 0x0010:
            return data[start:start + length].decode("ascii", "replace").rstrip("\0 ")
        offset = start + length
    return None


def small_dictionary_will_do(syntaxes: Iterable[Optional[str]]) -> bool:
    """Every file of the batch (whose transfer syntaxes these are) is in the standard's explicit
    VR little endian transfer syntax, plain or encapsulated (not implicit VR, whose VRs come from
    the dictionary; not big endian, deflated or a private syntax, which are not tested that
    way)."""
    for syntax in syntaxes:
        syntax = syntax or ""
        if syntax not in (EXPLICIT_LITTLE, RLE) and not syntax.startswith(ENCAPSULATED_FAMILY):
            return False
    return True


# storescu proposes the uncompressed transfer syntaxes only, unless told which compressed one (with
# them); without it a compressed file could not go on the association (storescu has no codec to
# decompress it) and went through store-straight, one association each. The options as DCMTK 3.6.7
# names them (storescu --help, checked against the syntaxes it proposes with +v). Not MPEG or HEVC:
# with those storescu proposes nothing else, for every storage class.
PROPOSE = {"1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx", "1.2.840.10008.1.2.4.70": "-xs",
           "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.4.90": "-xv",
           "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr"}


def proposal(syntaxes: set[Optional[str]]) -> list[str]:
    """storescu's option to propose the batch's compressed transfer syntax, when every file of the
    batch is in that one (a batch with uncompressed files keeps storescu's own proposals, one
    presentation context per syntax, so that they go as they are; its compressed files go through
    store-straight, as do the files of a syntax storescu is not told of)."""
    return [PROPOSE[s] for s in syntaxes if s in PROPOSE] if len(syntaxes) == 1 else []


def environment(syntaxes: set[Optional[str]]) -> dict[str, str]:
    """storescu's environment: this process's own, with TCP_NODELAY=1 unless it sets TCP_NODELAY
    (config.dcmtk_env: Nagle's algorithm off), and the small dictionary when it will do."""
    env = {**os.environ, **dcmtk_env.to_set(os.environ)}
    if small_dictionary_will_do(syntaxes) and os.path.exists(SMALL_DICTIONARY):
        env["DCMDICTPATH"] = SMALL_DICTIONARY
    return env


def command(node: Node, local_aet: str, timeout: float, paths: Sequence[str], propose: Sequence[str] = ()) -> list[str]:
    seconds = str(max(1, int(round(timeout))))
    return ["storescu", "-nh", "+rn", "-q", *propose, "-aet", local_aet, "-aec", node.aet,
            "-to", seconds, "-ta", seconds, "-td", seconds, node.host, str(node.port), *paths]


class Batch:
    """A storescu run in flight: `wait()` gives the Orthanc instance IDs the destination
    acknowledged (the same set if asked again), and `left` then holds the bytes of every file it
    did not (read back from the folder before it goes: the caller sends them another way).
    Started by `Writing.start`, so that the caller can make the next batch meanwhile (storescu
    holds no GIL). Its folder goes back to FOLDERS only once its storescu has exited: whatever
    ends the wait (a cancel, the deadline, an error of `cancelled()` itself) kills a storescu
    still running first, so that no run reads or renames another batch's files."""

    def __init__(self, folder: Optional[str], names: dict[str, ManifestItem], process: Optional[subprocess.Popen],
                 timeout: float, cancelled: Check, files: int = 0, kept: Sequence[FileItem] = ()) -> None:
        """`names`: path -> its item; `files`: how many files the folder holds (0: it is removed once
        sent, not reused); `kept`: what could not be written there, left as it is."""
        self.folder, self.names, self.process, self.cancelled = folder, names, process, cancelled
        self.files, self.kept = files, list(kept)
        self.deadline = time.monotonic() + timeout * (len(names) + 3)   # storescu's own timeouts end it sooner
        self._done: Optional[set[str]] = None
        self.left: list[FileItem] = []

    def wait(self) -> set[str]:
        if self._done is not None:
            return self._done
        try:
            while self.process is not None:
                try:
                    self.process.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if self.cancelled() or time.monotonic() > self.deadline:
                        self.process.kill()
                        self.process.wait()
                        break
            done = {path for path in self.names if os.path.exists(path + ".done")}
            self._done = {self.names[path].instance_id for path in done}
            left = ((item, _read_back(path)) for path, item in self.names.items() if path not in done)
            self.left = [(item, data) for item, data in left if data is not None] + self.kept
            return self._done
        finally:
            self._done = set() if self._done is None else self._done
            self._end()

    def _end(self) -> None:
        """storescu ended (killed if need be), then its folder kept for the next batch, or removed."""
        ended = True
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.kill()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                ended = False
        if self.folder is not None and self.files and ended:
            FOLDERS.give_back(self.folder, self.files)
        elif self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None


def _read_back(path: str) -> Optional[bytes]:
    """A file storescu did not deliver, as written (or renamed .bad by storescu); None if it cannot
    be read (then the instance is reported not sent, and tried again)."""
    for name in (path, path + ".bad"):
        try:
            with open(name, "rb") as handle:
                return handle.read()
        except OSError:
            continue
    return None


def worth_a_batch(count: int, size: int) -> bool:
    """SMALLEST instances or more, or SMALLEST_BYTES in all (fewer large ones: DX, MG, whose chunks
    the memory bound keeps short; starting storescu is then little beside what it sends)."""
    return count >= SMALLEST or size >= SMALLEST_BYTES


class Writing:
    """A batch written to a private folder in RAM (one a last batch left, if any) as it is made,
    one instance at a time, so that a chunk of pseudonymized instances is never all in memory
    (measured on 512x512 CT: a chunk of 50 joined files in memory took fresh pages each time,
    0.25 ms of CPU an instance); then `start()` sends it on one association. What cannot be
    written (no folder, /dev/shm full: a container's is 64 MB) is kept as it is, for the caller
    to send another way."""

    def __init__(self) -> None:
        self.names: dict[str, ManifestItem] = {}
        self.kept: list[FileItem] = []
        self.syntaxes: set[Optional[str]] = set()
        try:
            self.folder: Optional[str]
            self.folder, self.count = FOLDERS.take()
        except OSError:
            self.folder, self.count = None, 0

    @property
    def items(self) -> list[ManifestItem]:
        return [*self.names.values(), *(item for item, _ in self.kept)]

    def __len__(self) -> int:
        return len(self.names) + len(self.kept)

    def add(self, item: ManifestItem, parts: Sequence[Buffer]) -> None:
        if self.folder is not None and not self.kept:
            path = os.path.join(self.folder, f"{len(self.names)}.dcm")
            try:
                _write(path, parts)
                self.names[path] = item
                self.syntaxes.add(transfer_syntax_of(bytes(parts[0][:4096])))
                return
            except OSError:              # a part written is not left beyond what the folder counts
                with contextlib.suppress(OSError):
                    os.remove(path)
        self.kept.append((item, joined(parts)))

    def start(self, node: Node, local_aet: str, timeout: float, cancelled: Check) -> Batch:
        """storescu started on what was written (nothing started when nothing was)."""
        folder, count, self.folder = self.folder, max(self.count, len(self.names)), None
        if folder is None:
            return Batch(None, {}, None, timeout, cancelled, kept=self.kept)
        try:
            _remove_from(folder, len(self.names), self.count)
        except OSError:
            pass
        if not self.names:
            return Batch(folder, {}, None, timeout, cancelled, files=count, kept=self.kept)
        try:
            process = subprocess.Popen(command(node, local_aet, timeout, list(self.names), proposal(self.syntaxes)),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       env=environment(self.syntaxes))
        except OSError:              # no storescu, no memory for a process: the caller sends them another way
            process = None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Batch(folder, self.names, process, timeout, cancelled, files=count, kept=self.kept)

    def discard(self) -> None:
        """Not to be sent after all: the folder goes back as it is."""
        folder, self.folder = self.folder, None
        if folder is not None:
            FOLDERS.give_back(folder, max(self.count, len(self.names)))


def start_batch(node: Node, local_aet: str, files: Sequence[FileItem], timeout: float, cancelled: Check) -> Batch:
    """Write the files to a private folder in RAM and start sending them on one association."""
    return filled(Writing(), files).start(node, local_aet, timeout, cancelled)


def store_batch(node: Node, local_aet: str, files: Sequence[FileItem], timeout: float, cancelled: Check) -> set[str]:
    """Send the files on one association; the Orthanc instance IDs the destination acknowledged."""
    return start_batch(node, local_aet, files, timeout, cancelled).wait()
