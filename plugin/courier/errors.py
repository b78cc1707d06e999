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

`store_failure()` is the one place that reads Orthanc's error text to tell these apart;
`bucket_failure()` the one that reads an S3 store's answer.
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


# S3 error codes that say the bucket cannot take anything with this configuration: nothing more is
# sent there now, and trying again cannot help until the configuration (or the store) changes.
BUCKET_UNUSABLE = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
                   "AllAccessDisabled", "AccountProblem", "InvalidBucketName", "PermanentRedirect",
                   "AuthorizationHeaderMalformed", "InvalidToken", "ExpiredToken")
# What the store found wrong with these bytes on the way: sending them again can help.
BUCKET_RESEND = ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "IncompleteBody", "RequestTimeout",
                 "InvalidPart", "NoSuchUpload")


def bucket_failure(status: int | None, code: str, message: str) -> DeliveryError:
    """What a failed request to an S3-compatible store means (AWS S3's codes, which MinIO, Ceph and
    GCS's interoperability answer too):

        no answer (connection refused, timeout, reset)   -> down, retried
        5xx, 429, SlowDown, RequestTimeout               -> down, retried
        AccessDenied, InvalidAccessKeyId, NoSuchBucket... -> down, permanent (wrong configuration)
        BadDigest and the like                            -> refused, retried (the bytes were damaged)
        any other 4xx (EntityTooLarge, InvalidRequest...) -> refused, permanent
    """
    text = f"{code}: {message}" if code and message else (code or message or "unknown error")
    if status is None or status >= 500 or status == 429 or code in ("SlowDown", "ServiceUnavailable",
                                                                    "InternalError"):
        return DeliveryError(text)
    if code in BUCKET_UNUSABLE or status in (401, 403) or (status == 404 and code in ("", "NoSuchBucket")):
        return DeliveryError(text, retriable=False)
    return Refused(text, retriable=code in BUCKET_RESEND)
