"""Pseudonymization on ingest, fail-closed: the decision taken in Orthanc's received-instance
callback, before anything is stored.

An instance that matches a route with "PseudonymizeOn": "Ingest" is stored pseudonymized only.
If anything goes wrong (unreadable file, burned-in suspect, a bug), the instance is not stored
at all: the original bytes go to the quarantine folder and GET /courier/quarantine lists them
with the reason. (Orthanc stores an instance unchanged when the callback raises, and DISCARD
answers the sender with success: hence catch everything, and quarantine rather than drop.)

What is stored as it is: an instance no Ingest route matches, and Courier's own output, known by
its keyed mark (Pseudonymizer.made_this), never by a DeidentificationMethod text a sender can
write. What is refused (quarantined): what Orthanc itself could not have stored from the
original. Orthanc 1.10.1 answers a REST upload (POST /instances) from the original it received,
not from the copy this gate returns; if the original lacks the UIDs Orthanc indexes by, or its
data set is not encoded as its header says, Orthanc answers 404 "Inexistent tag" or 400 "Bad file
format" whatever the gate did, so such an original is refused, and an error then always means
that nothing was stored (README, "Pseudonymization").
"""
from __future__ import annotations

import io
import logging
import os
import threading
import uuid
from collections import OrderedDict
from typing import Any, Collection, Optional, Sequence

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

from courier.config.routes import Route
from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer
from courier.store.records import orthanc_instance_id
from courier.store.store import Store

log = logging.getLogger("courier.ingest_gate")

KEEP, MODIFY, DISCARD = "keep", "modify", "discard"


INDEXED_BY = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")   # Orthanc cannot store without them


def top_level_tags(data: bytes) -> dict[str, Any]:
    return tags_of(dcmread(io.BytesIO(data), stop_before_pixels=True))


BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"}


def tags_of(ds: Dataset, keywords: Optional[Collection[str]] = None) -> dict[str, Any]:
    """The top-level public attributes of `ds` but sequences and binary ones (pixel data), by
    keyword, as strings: what routes match; only `keywords` if given (converting every value of
    a CT was a fifth of the ingest gate's time, measured under a burst)."""
    tags: dict[str, Any] = {}
    elements = ds if keywords is None else (ds[k] for k in keywords if k in ds)
    for elem in elements:
        if elem.keyword and elem.VR not in BINARY_VRS and not elem.tag.is_private:
            value = elem.value
            tags[elem.keyword] = "\\".join(str(v) for v in value) if elem.VM > 1 else ("" if value is None else str(value))
    return tags


LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def encoded_implicit(data: bytes) -> Optional[bool]:
    """Whether the data set after the File Meta Information is encoded Implicit VR, judged from
    its first element as DICOM readers do (None when it cannot be told). pydicom reads a data
    set encoded against its header's transfer syntax anyway (it warns); DCMTK, so Orthanc,
    does not."""
    if data[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(data) and int.from_bytes(data[pos:pos + 2], "little") == 0x0002:
        if data[pos + 4:pos + 6] in LONG_LENGTH_VRS:
            pos += 12 + int.from_bytes(data[pos + 8:pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(data[pos + 6:pos + 8], "little")
    if pos + 6 > len(data):
        return None
    vr = data[pos + 4:pos + 6]
    return not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B)


def why_orthanc_cannot_store(ds: Dataset, data: bytes) -> Optional[str]:
    """Why Orthanc could not store (nor answer for) this original itself, or None."""
    missing = [k for k in INDEXED_BY if not str(ds.get(k) or "").strip(" \x00")]
    if missing:
        return f"no {' and no '.join(missing)}: Orthanc indexes instances by Study, Series and SOP Instance UID"
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID") or "")) if meta is not None else UID("")
    if syntax.is_transfer_syntax and not syntax.is_deflated:
        found = encoded_implicit(data)
        if found is not None and found != syntax.is_implicit_VR:
            return (f"its data set is encoded {'Implicit' if found else 'Explicit'} VR while its transfer syntax "
                    f"{syntax} ({syntax.name}) says {'Implicit' if syntax.is_implicit_VR else 'Explicit'} VR: "
                    "Orthanc cannot read it")
    return None


class MadeOnIngest:
    """The Orthanc IDs of the instances this process's gate made, by profile (the most recent
    `capacity`): the follower then knows them for Courier's output without reading their tags and
    keyed mark back from Orthanc, which parses the stored file for each (1.2-2.2 ms of Orthanc's
    CPU per routed instance, measured). Only a shortcut: an instance it does not hold (made before
    a restart, or forgotten) is verified by its mark as before. Only where Orthanc never replaces
    a stored instance (OverwriteInstances false, its default): otherwise an instance stored later
    under the same identifiers would be taken for the gate's."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._made: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, instance_id: str, profile: str) -> None:
        with self._lock:
            self._made[instance_id] = profile
            self._made.move_to_end(instance_id)
            while len(self._made) > self.capacity:
                self._made.popitem(last=False)

    def holds(self, instance_id: str, profile: str) -> bool:
        with self._lock:
            return self._made.get(instance_id) == profile


class IngestGate:
    def __init__(self, routes: Sequence[Route], pseudonymizer: Pseudonymizer, store: Store, quarantine_dir: str,
                 made: Optional[MadeOnIngest] = None) -> None:
        self.routes = tuple(routes)
        self.pseudonymizer, self.store, self.quarantine_dir, self.made = pseudonymizer, store, quarantine_dir, made
        self.profile = pseudonymizer.profile.name
        self.keywords = sorted({key for route in self.routes for key, _ in route.match})   # what they match on

    def decide(self, data: bytes) -> tuple[str, Optional[bytes]]:
        """Read without the Pixel Data, which goes back as it came (as on send: deid.pixel_tail),
        unless the profile removes or replaces it."""
        matched: list[Route] = []
        try:
            ds, pixels = self.pseudonymizer.read(data)
            if self.pseudonymizer.made_this(ds):
                return KEEP, None                   # Courier's own output (its keyed mark): never twice
            tags = tags_of(ds, self.keywords)
            matched = [r for r in self.routes if r.matches(tags)]
            if not matched:
                return KEEP, None
            why = why_orthanc_cannot_store(ds, data)
            if why:
                raise PseudonymizationError(f"not stored: {why}", "reject")
            out, result = self.pseudonymizer.pseudonymize_split(ds, pixels)
            self.store.crosswalk.record(self.profile, [result.patient_id], result.uids)
            if self.made is not None:
                self.made.add(orthanc_instance_id(result.dataset), self.profile)
            return MODIFY, out
        except PseudonymizationError as exc:      # on ingest nothing can wait for a retry: quarantine
            return self._quarantine(data, exc.reason, "reject" if exc.disposition == "reject" else "quarantine", matched)
        except Exception as exc:  # noqa: BLE001 - fail closed, whatever happened
            return self._quarantine(data, f"{type(exc).__name__}: {exc}", "quarantine", matched)

    def _quarantine(self, data: bytes, reason: str, disposition: str,
                    matched: Sequence[Route] = ()) -> tuple[str, Optional[bytes]]:
        """Keep the original, record why and for which Ingest route(s) (all of them when it was
        refused before any route could be matched)."""
        path = None
        try:
            os.makedirs(self.quarantine_dir, exist_ok=True)
            path = os.path.join(self.quarantine_dir, f"{uuid.uuid4().hex}.dcm")
            with open(path, "wb") as handle:
                handle.write(data)
        except OSError as exc:
            reason += f" (the original could not be kept: {exc.strerror})"
            path = None
        try:
            uid = str(dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
        except Exception:  # noqa: BLE001 - unreadable: no UID to show
            uid = None
        try:
            routes = ", ".join(r.name for r in (matched or self.routes))
            self.store.quarantine.add(reason, disposition, self.profile, route=routes, sop_instance_uid=uid, file=path)
        except Exception:  # noqa: BLE001 - never let the instance through because the record failed
            log.exception("could not record a quarantined instance (file %s)", path)
        return DISCARD, None
