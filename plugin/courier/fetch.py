"""Bringing a study from a source PACS into Courier's Orthanc, for transfer jobs.

C-MOVE through Orthanc's asynchronous `/queries/{id}/retrieve` job (so a cancel stops it within
a poll interval, even mid-association), then a count: the SOP Instance UIDs the source lists at
IMAGE level are compared with what arrived. A PACS that answers "success" with failed
sub-operations, or that silently loses images, shows up here as missing UIDs, never as success.
"""
from __future__ import annotations

import hashlib
import time
from typing import Callable

from .errors import DeliveryError
from .orthanc_rest import OrthancHttpError, OrthancRest
from .remote import c_find

POLL_SECONDS = 0.3


def orthanc_study_id(patient_id: str, study_uid: str) -> str:
    """Orthanc's identifier of a study: SHA-1 of "PatientID|StudyInstanceUID" in 5 groups of 8."""
    digest = hashlib.sha1(f"{patient_id}|{study_uid}".encode()).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def expected_uids(rest: OrthancRest, source: str, study_uid: str) -> list[str]:
    answers = c_find(rest, source, "IMAGE", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "SOPInstanceUID": ""})
    return sorted({a["SOPInstanceUID"] for a in answers if a.get("SOPInstanceUID")})


def present_instances(rest: OrthancRest, study_id: str) -> dict[str, tuple[str, int]]:
    """SOP Instance UID -> (Orthanc ID, size) of what Courier's Orthanc holds of the study."""
    try:
        children = rest.get_json(f"/studies/{study_id}/instances")
    except OrthancHttpError as exc:
        if exc.status == 404:
            return {}
        raise
    return {c["MainDicomTags"].get("SOPInstanceUID", ""): (c["ID"], c.get("FileSize", 0)) for c in children}


def c_move(rest: OrthancRest, source: str, study_uid: str, target_aet: str, cancelled: Callable[[], bool],
           timeout: float = 3600.0) -> None:
    """C-MOVE the study to Courier; returns when Orthanc's move job ends; DeliveryError if it
    failed, was cancelled or timed out."""
    query = rest.post_json(f"/modalities/{source}/query", {"Level": "Study", "Query": {"StudyInstanceUID": study_uid}})
    try:
        job = rest.post_json(f"{query['Path']}/retrieve", {"TargetAet": target_aet, "Synchronous": False})
        deadline = time.monotonic() + timeout
        while True:
            state = rest.get_json(f"/jobs/{job['ID']}")
            if state["State"] == "Success":
                return
            if state["State"] == "Failure":
                raise DeliveryError(f"C-MOVE from {source} failed: {state.get('ErrorDetails') or state.get('ErrorDescription')}")
            if cancelled() or time.monotonic() > deadline:
                rest.post_json(f"/jobs/{job['ID']}/cancel", {})
                raise DeliveryError("C-MOVE cancelled" if cancelled() else f"C-MOVE from {source} timed out",
                                   retriable=not cancelled())
            time.sleep(POLL_SECONDS)
    finally:
        try:
            rest.delete(query["Path"])
        except DeliveryError:
            pass
