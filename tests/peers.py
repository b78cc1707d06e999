"""DICOM peers for the tests: DCMTK's dcmqrscp as a real PACS nobody here wrote; written with
pynetdicom, a slow PACS that answers C-FIND and C-MOVE for several studies (Study or Patient
Root), and a storage SCP that records every C-STORE (Orthanc silently accepts duplicates; this
one counts them) and refuses what it is told to."""
from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional, Sequence

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from harness import free_port

SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


class SlowPacs:
    """A Study Root Q/R SCP over `instances` (any number of studies). Each C-MOVE is recorded in
    `moves` (StudyInstanceUID, monotonic time) and sends its instances to `router_port`, one every
    `seconds_per_instance`, stopping at a C-CANCEL."""

    def __init__(self, instances: Sequence[Dataset], router_port, seconds_per_instance: float = 0.2,
                 aet: str = "SLOW", patient_root: bool = False, availability: Optional[dict] = None) -> None:
        """`router_port`: where C-MOVEs go, or {move destination AE title: port} for several routers;
        `availability`: StudyInstanceUID -> the InstanceAvailability its STUDY answers carry."""
        self.instances, self.router_port, self.delay, self.aet = list(instances), router_port, seconds_per_instance, aet
        self.availability = availability or {}
        self.port = free_port()
        self.identifiers: list[Dataset] = []           # every C-FIND identifier received
        self.move_identifiers: list[Dataset] = []
        self.moves: list[tuple[str, float]] = []
        self.sent: list[str] = []
        self.sent_at: dict[str, float] = {}          # SOP Instance UID -> wall-clock time it was sent
        self._lock = threading.Lock()
        ae = AE(ae_title=aet)
        if patient_root:                                # an old PACS that offers Patient Root only
            ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
            ae.add_supported_context(PatientRootQueryRetrieveInformationModelMove)
        else:
            ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
            ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
        ae.add_supported_context(Verification)            # a PACS answers C-ECHO (Courier's pre-check)
        for sop_class in (CTImageStorage, MRImageStorage):
            ae.add_requested_context(sop_class, SYNTAXES[0])
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_FIND, self._find), (evt.EVT_C_MOVE, self._move)])

    @property
    def modality(self) -> dict:
        return {"AET": self.aet, "Host": "127.0.0.1", "Port": self.port}

    def _matching(self, identifier: Dataset) -> list[Dataset]:
        found = []
        for ds in self.instances:
            if all(not getattr(identifier, key, "") or str(getattr(identifier, key)) == str(getattr(ds, key))
                   for key in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "AccessionNumber")):
                found.append(ds)
        return found

    def _find(self, event):
        identifier = event.identifier
        self.identifiers.append(identifier)
        level = identifier.QueryRetrieveLevel
        key = {"STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}.get(level, "PatientID")
        seen = set()
        for ds in self._matching(identifier):
            if getattr(ds, key) in seen:
                continue
            seen.add(getattr(ds, key))
            answer = Dataset()
            answer.QueryRetrieveLevel = level
            for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
                setattr(answer, keyword, getattr(ds, keyword))
            if level == "STUDY" and str(ds.StudyInstanceUID) in self.availability:
                answer.InstanceAvailability = self.availability[str(ds.StudyInstanceUID)]
            if level in ("SERIES", "IMAGE"):
                answer.SeriesInstanceUID, answer.Modality = ds.SeriesInstanceUID, ds.Modality
            if level == "IMAGE":
                answer.SOPInstanceUID = ds.SOPInstanceUID
            yield 0xFF00, answer

    def _move(self, event):
        self.move_identifiers.append(event.identifier)
        found = self._matching(event.identifier)
        with self._lock:
            self.moves.append((str(event.identifier.StudyInstanceUID), time.monotonic()))
        if isinstance(self.router_port, dict):
            destination = event.move_destination.decode().strip() if isinstance(event.move_destination, bytes) \
                else str(event.move_destination).strip()
            yield "127.0.0.1", self.router_port[destination]
        else:
            yield "127.0.0.1", self.router_port
        yield len(found)
        for ds in found:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            time.sleep(self.delay)
            with self._lock:
                self.sent.append(str(ds.SOPInstanceUID))
                self.sent_at[str(ds.SOPInstanceUID)] = time.time()
            yield 0xFF00, ds

    def moved_studies(self) -> list[str]:
        with self._lock:
            return [study for study, _ in self.moves]

    def close(self) -> None:
        self.server.shutdown()


class RecordingScp:
    """A storage SCP that records every C-STORE it acknowledges (`received`, duplicates included)
    and every one it is sent (`offered`). `accept` lists the SOP classes it negotiates (an
    instance of another class finds no presentation context); `refuse(ds)` may return a failure
    status for one instance."""

    def __init__(self, aet: str = "RECORDER", accept: Sequence[str] = (CTImageStorage, MRImageStorage),
                 refuse: Optional[Callable[[Dataset], Optional[int]]] = None, delay: float = 0.0,
                 nodelay: bool = False) -> None:
        """`nodelay`: record in `peers_nodelay`, for every association, whether the peer's socket
        has Nagle's algorithm off (tests/sockets.py)."""
        self.aet, self.refuse, self.delay, self.nodelay = aet, refuse, delay, nodelay
        self.peers_nodelay: list = []            # True/False, or why it could not be read
        self.port = free_port()
        self.received: list[str] = []
        self.offered: list[str] = []
        self.first_at: dict[str, float] = {}      # StudyInstanceUID -> when its first instance came (time.time())
        self.associations = 0                      # accepted associations
        self._lock = threading.Lock()
        ae = AE(ae_title=aet)
        ae.add_supported_context(Verification)
        for sop_class in accept:
            ae.add_supported_context(sop_class, SYNTAXES)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store), (evt.EVT_ACCEPTED, self._accepted)])

    @property
    def modality(self) -> dict:
        return {"AET": self.aet, "Host": "127.0.0.1", "Port": self.port}

    def _accepted(self, event) -> None:
        peer_nodelay = None
        if self.nodelay:
            from sockets import nodelay
            try:
                peer_nodelay = nodelay(event.assoc.dul.socket.socket.getpeername()[1], self.port)
            except Exception as e:              # pynetdicom would only log it: the test shows it
                peer_nodelay = f"could not read TCP_NODELAY: {e!r}"
        with self._lock:
            self.associations += 1
            if peer_nodelay is not None:
                self.peers_nodelay.append(peer_nodelay)

    def _store(self, event) -> int:
        ds = event.dataset
        uid = str(ds.SOPInstanceUID)
        with self._lock:
            self.offered.append(uid)
            self.first_at.setdefault(str(ds.get("StudyInstanceUID", "")), time.time())
        if self.delay:
            time.sleep(self.delay)
        status = self.refuse(ds) if self.refuse else None
        if status:
            return status
        with self._lock:
            self.received.append(uid)
        return 0x0000

    def uids(self) -> set[str]:
        with self._lock:
            return set(self.received)

    def duplicates(self) -> int:
        with self._lock:
            return sum(n - 1 for n in Counter(self.received).values() if n > 1)

    def close(self) -> None:
        self.server.shutdown()


def wait_listening(port: int, what: str, seconds: float = 10.0) -> None:
    """Until something accepts connections on the loopback port (a peer just started)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not start")


class Storescp:
    """DCMTK's storescp, bit-preserving (+B: it writes what it received as it came) into `folder`;
    `accepts`: its options of which transfer syntaxes to accept ("" for its defaults)."""

    def __init__(self, folder: Path, accepts: str = "", aet: str = "ANY-SCP") -> None:
        folder.mkdir(parents=True)
        self.folder, self.aet, self.port = folder, aet, free_port()
        self.process = subprocess.Popen(["storescp", *accepts.split(), "+B", "-aet", aet, "-od", str(folder),
                                         str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port, "storescp")

    def received(self) -> dict[str, bytes]:
        """File name (modality and SOP Instance UID) -> the bytes as received."""
        return {p.name: p.read_bytes() for p in self.folder.iterdir()}

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


class DcmQrScp:
    """DCMTK's dcmqrscp holding `files`, able to C-MOVE to `destinations` ({AET: port} on loopback).
    It ignores ModalitiesInStudy and returns no SeriesDescription: a real PACS's habits."""

    def __init__(self, workdir: Path, files: Sequence[Path], destinations: dict[str, int], aet: str = "DCMQRSCP") -> None:
        self.aet, self.port = aet, free_port()
        self.dir = workdir / "dcmqrscp"
        storage = self.dir / "db"
        storage.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy(path, storage / Path(path).name)
        subprocess.run(["dcmqridx", str(storage), *[str(storage / Path(p).name) for p in files]], check=True,
                       capture_output=True)
        hosts = "\n".join(f"{name.lower()} = ({name}, 127.0.0.1, {port})" for name, port in destinations.items())
        config = self.dir / "dcmqrscp.cfg"
        config.write_text(f"NetworkTCPPort = {self.port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
                          f"HostTable BEGIN\n{hosts}\nHostTable END\nVendorTable BEGIN\nVendorTable END\n"
                          f"AETable BEGIN\n{aet} {storage} RW (200, 1024mb) ANY\nAETable END\n")
        self.log = open(self.dir / "dcmqrscp.log", "wb")
        self.process = subprocess.Popen(["dcmqrscp", "-c", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_listening(self.port, "dcmqrscp")

    @property
    def modality(self) -> dict:
        return {"AET": self.aet, "Host": "127.0.0.1", "Port": self.port}

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()
