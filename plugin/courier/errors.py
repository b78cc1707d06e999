"""The errors Courier raises, decided in one place.

    CourierError
    ├── ConfigError        bad "Courier" section: names the JSON path; stops start-up
    ├── ApiError           bad REST input: carries the HTTP status and a message
    └── DeliveryError      a send to a destination failed
        ├── retriable=True   network down, peer busy, 5xx: the task is retried with backoff
        └── retriable=False  the resource is gone from Orthanc: retrying cannot help

Only `DeliveryError.retriable` decides whether a failed task is tried again; senders never
make that choice themselves.
"""
from __future__ import annotations


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
