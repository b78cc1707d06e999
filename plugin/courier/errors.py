"""The errors Courier raises, decided in one place.

    CourierError
    ├── ConfigError        bad "Courier" section: names the JSON path; stops start-up
    ├── ApiError           bad REST input: carries the HTTP status and a message
    └── DeliveryError      a send or fetch failed; by itself: the other side is down or unreachable
        │                    (refused connection, timeout, association rejected): stop sending there
        ├── Refused          the destination answered and refused this instance (a DIMSE status, no
        │                    presentation context, a STOW failure): the others are still sent
        └── Cancelled        the task was cancelled, or the router is stopping: not a failure

    `retriable` says whether trying again later can help: True for a network failure or a
    0xA7xx "out of resources" status, False for a permanent refusal or a resource gone from
    Orthanc. Only it decides whether a failed task is tried again; senders never decide.

`store_failure()` is the one place that reads Orthanc's error text to tell these apart.
"""
from __future__ import annotations

import re


class CourierError(Exception):
    """Base of every error Courier raises on purpose."""


class ConfigError(CourierError):
    """A problem in the "Courier" section (or the node registries it refers to)."""

    def __init__(self, path: str, problem: str, hint: str = "") -> None:
        self.path, self.problem, self.hint = path, problem, hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"Courier configuration error at {self.path}: {self.problem}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ApiError(CourierError):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


class DeliveryError(CourierError):
    def __init__(self, message: str, retriable: bool = True) -> None:
        self.retriable = retriable
        super().__init__(message)


class Refused(DeliveryError):
    """The destination refused this instance; the association (or HTTP service) itself worked."""


class Cancelled(DeliveryError):
    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message, retriable=True)


def store_failure(kind: str, details: str) -> DeliveryError:
    """What a failed Orthanc store job (to a modality, peer or DICOMweb server) means, from its error
    text (Orthanc 1.10.1 / orthanc-dicomweb 1.7, measured):

        DICOM  "DicomAssociation - connecting to AET ...: TCP Initialization Error / DUL network
               read timeout / Association Rejected"           -> down
               "C-STORE SCU to AET ... has failed with DIMSE status 0xA700"
                                                              -> refused, retriable for 0xA7xx
               "Cannot transcode from <syntax> to one of [ ]" -> refused: no presentation context
        peers  "libCURL error: ..."                           -> down
        DICOMweb  "Error encountered within the plugin engine" -> down
    Anything else is taken as "down": retried later, never counted as delivered.
    """
    text = details or "unknown error"
    if kind == "dicom":
        status = re.search(r"DIMSE status 0x([0-9A-Fa-f]{4})", text)
        if status:
            return Refused(text, retriable=status.group(1).upper().startswith("A7"))
        if "Cannot transcode" in text:
            return Refused(f"{text} (the destination accepts no presentation context for this instance)",
                           retriable=False)
    return DeliveryError(text)
