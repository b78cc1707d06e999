"""The records the store reads and writes: task states, new tasks, audit events, manifest items,
delivery attempts and job targets. Plain frozen dataclasses, no SQL."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

PENDING, RUNNING, SUCCESS, WARNING, FAILURE, CANCELED = (
    "PENDING", "RUNNING", "SUCCESS", "WARNING", "FAILURE", "CANCELED")
STATES = (PENDING, RUNNING, SUCCESS, WARNING, FAILURE, CANCELED)
FINAL_STATES = (SUCCESS, WARNING, FAILURE, CANCELED)


@dataclass(frozen=True)
class JobTarget:
    """What one job task brings: a study, or one series of it."""
    study_uid: str
    resource_id: str                  # Orthanc ID of the study or series once in Courier's Orthanc
    study_id: str                     # Orthanc ID of the study
    present: bool                     # already in Courier's Orthanc before the job (then never deleted)
    series_uid: Optional[str] = None


@dataclass(frozen=True)
class NewTask:
    route: str
    destination: str
    level: str
    resource_id: str
    priority: int = 0
    delete_after: bool = False
    profile: Optional[str] = None
    job_id: Optional[int] = None
    source: Optional[str] = None
    study_uid: Optional[str] = None
    reviewed: bool = False          # an admin released it from quarantine: no burned-in check


@dataclass(frozen=True)
class AuditEvent:
    action: str
    actor: str = "courier"
    route: Optional[str] = None
    destination: Optional[str] = None
    resource_id: Optional[str] = None
    task_id: Optional[int] = None
    detail: Any = None


OUTCOME_ACTIONS = {SUCCESS: "task-delivered", WARNING: "task-incomplete", FAILURE: "task-failed",
                   PENDING: "task-retry-scheduled"}


@dataclass(frozen=True)
class ManifestItem:
    instance_id: str
    sop_instance_uid: str
    size: int = 0
    delivered: bool = False


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt of `task` achieved, and the state policy.decide() chose."""
    task: dict
    delivered_ids: Sequence[str]
    failed: int
    state: str
    retry_in: Optional[float] = None
    error: Optional[str] = None
