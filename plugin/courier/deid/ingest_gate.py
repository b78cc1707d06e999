"""Pseudonymization on ingest, fail-closed: the decision taken in Orthanc's received-instance
callback, before anything is stored.

An instance that matches a route with "PseudonymizeOn": "Ingest" is stored pseudonymized only.
If anything goes wrong (unreadable file, burned-in suspect, a bug), the instance is not stored
at all: the original bytes go to the quarantine folder and GET /courier/quarantine lists them
with the reason. (Orthanc stores an instance unchanged when the callback raises, and DISCARD
answers the sender with success: hence catch everything, and quarantine rather than drop.)
"""
from __future__ import annotations

import io
import logging
import os
import uuid
from typing import Any, Optional, Sequence

from pydicom import dcmread

from courier.config.routes import Route
from courier.deid.pseudonymizer import PseudonymizationError, Pseudonymizer, method_marker
from courier.store.store import Store

log = logging.getLogger("courier.ingest_gate")

KEEP, MODIFY, DISCARD = "keep", "modify", "discard"


def top_level_tags(data: bytes) -> dict[str, Any]:
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    tags: dict[str, Any] = {}
    for elem in ds:
        if elem.keyword and elem.VR != "SQ" and not elem.tag.is_private:
            value = elem.value
            tags[elem.keyword] = "\\".join(str(v) for v in value) if elem.VM > 1 else ("" if value is None else str(value))
    return tags


class IngestGate:
    def __init__(self, routes: Sequence[Route], pseudonymizer: Pseudonymizer, store: Store, quarantine_dir: str) -> None:
        self.routes = tuple(routes)
        self.pseudonymizer, self.store, self.quarantine_dir = pseudonymizer, store, quarantine_dir
        self.profile = pseudonymizer.profile.name

    def decide(self, data: bytes) -> tuple[str, Optional[bytes]]:
        try:
            tags = top_level_tags(data)
            if method_marker(self.profile) in tags.get("DeidentificationMethod", "").split("\\"):
                return KEEP, None                   # already pseudonymized with this profile: never twice
            matched = [r for r in self.routes if r.matches(tags)]
            if not matched:
                return KEEP, None
            out, result = self.pseudonymizer.pseudonymize_bytes(data)
            self.store.crosswalk.record(self.profile, [result.patient_id], result.uids)
            return MODIFY, out
        except PseudonymizationError as exc:      # on ingest nothing can wait for a retry: quarantine
            return self._quarantine(data, exc.reason, "reject" if exc.disposition == "reject" else "quarantine")
        except Exception as exc:  # noqa: BLE001 - fail closed, whatever happened
            return self._quarantine(data, f"{type(exc).__name__}: {exc}", "quarantine")

    def _quarantine(self, data: bytes, reason: str, disposition: str) -> tuple[str, Optional[bytes]]:
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
            self.store.quarantine.add(reason, disposition, self.profile, sop_instance_uid=uid, file=path)
        except Exception:  # noqa: BLE001 - never let the instance through because the record failed
            log.exception("could not record a quarantined instance (file %s)", path)
        return DISCARD, None
