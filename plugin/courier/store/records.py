"""The records the store reads and writes: task states, tasks (new and stored), claims, manifest
items, delivery attempts, jobs and their targets, audit events. Frozen dataclasses, no SQL.

A task is "bring resource R to destination D (under profile P)", with the states

    PENDING -> RUNNING -> SUCCESS | WARNING | FAILURE | CANCELED

and a manifest: the SOP Instance UIDs it must deliver, each acknowledged or not.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence


def orthanc_id(*uids: str) -> str:
    """Orthanc's identifier of a resource from its identifying UIDs, joined by "|": (PatientID,
    StudyInstanceUID) a study, + SeriesInstanceUID a series, + SOPInstanceUID an instance; SHA-1
    in 5 groups of 8 hex digits."""
    digest = hashlib.sha1("|".join(uids).encode("utf-8")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def orthanc_instance_id(tags: Mapping[str, Any]) -> str:
    """Orthanc's identifier of an instance from its tags (Orthanc's, or a pydicom Dataset): SHA-1 of
    PatientID|StudyUID|SeriesUID|SOPInstanceUID."""
    return orthanc_id(*(str(tags.get(k) or "") for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                                                         "SOPInstanceUID")))


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
    patient_id: Optional[str] = None  # the source's PatientID (a Patient Root C-MOVE or C-GET needs it)
    availability: Optional[str] = None  # the source's InstanceAvailability: ONLINE, NEARLINE, OFFLINE


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
    manifest: tuple[ManifestItem, ...] = ()     # known when it is made (an Instance): not listed again when claimed


@dataclass(frozen=True)
class AuditEvent:
    action: str
    actor: str = "courier"
    route: Optional[str] = None
    destination: Optional[str] = None
    resource_id: Optional[str] = None
    task_id: Optional[int] = None
    detail: Any = None


@dataclass(frozen=True)
class TrafficEvent:
    """One or more DICOM operations of one caller, for the traffic log (store.traffic): a C-STORE
    burst, C-STORE refusals, C-FINDs served. `at` and `last_at` are Unix times; `detail` is a
    refusal's reason or a C-FIND's query level, never a patient's name or ID."""
    service: str                     # C-STORE | C-FIND (TRAFFIC_SERVICES)
    calling_aet: str
    status: str                      # accepted | refused
    at: float
    last_at: Optional[float] = None  # the last operation's time (default: at)
    called_aet: str = ""
    remote_ip: str = ""
    operations: int = 1              # C-STOREs received or refused, C-FINDs served
    instances: int = 0
    bytes: int = 0
    detail: str = ""


TRAFFIC_SERVICES = ("C-STORE", "C-FIND", "C-ECHO", "C-MOVE", "C-GET")
TRAFFIC_STATUSES = ("accepted", "refused")


OUTCOME_ACTIONS = {SUCCESS: "task-delivered", WARNING: "task-incomplete", FAILURE: "task-failed",
                   PENDING: "task-retry-scheduled"}


MISSING = "missing:"   # manifest entry of an instance the source listed but never sent
DIRECT = "direct:"     # manifest entry of an instance moved straight from the source to the destination


@dataclass(frozen=True)
class ManifestItem:
    instance_id: str                  # Orthanc ID, or MISSING/DIRECT + SOP Instance UID
    sop_instance_uid: str
    size: int = 0
    delivered: bool = False

    @property
    def never_arrived(self) -> bool:
        return self.instance_id.startswith(MISSING)

    @classmethod
    def of_instance(cls, info: Mapping[str, Any]) -> ManifestItem:
        """From Orthanc's answer about an instance (/instances/{id}, or a bulk-content entry)."""
        return cls(info["ID"], info["MainDicomTags"].get("SOPInstanceUID", ""), info.get("FileSize", 0))


@dataclass(frozen=True)
class Task:
    """A task as stored (one row of the tasks table)."""
    id: int
    route: str                        # route name, "job-N", "manual:<user>" or "release:<user>"
    destination: str
    level: str                        # Instance | Series | Study
    resource_id: str                  # Orthanc ID
    state: str
    priority: int = 0
    attempts: int = 0
    next_attempt_at: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: Optional[float] = None
    heartbeat_at: Optional[float] = None
    owner: Optional[str] = None
    last_error: Optional[str] = None
    delete_after: bool = False
    expected: Optional[int] = None    # instances in the manifest, once known
    delivered: int = 0
    bytes: int = 0
    profile: Optional[str] = None     # pseudonymization profile applied on send
    job_id: Optional[int] = None
    source: Optional[str] = None      # a job task fetches from this node first
    study_uid: Optional[str] = None
    series_uid: Optional[str] = None
    study_id: Optional[str] = None    # Orthanc ID of the study a job task fetches into
    reviewed: bool = False            # released from quarantine by an admin: no burned-in check
    phase: Optional[str] = None       # a job task: "fetch" (RUNNING), then "send" (PENDING once fetched, RUNNING)
    patient_id: Optional[str] = None  # a job task: the source's PatientID
    availability: Optional[str] = None  # a job task: the source's InstanceAvailability (OFFLINE: shorter timeout)

    COLUMNS = ("id", "route", "destination", "level", "resource_id", "state", "priority", "attempts",
               "next_attempt_at", "created_at", "updated_at", "finished_at", "heartbeat_at", "owner",
               "last_error", "delete_after", "expected", "delivered", "bytes", "profile", "job_id", "source",
               "study_uid", "series_uid", "study_id", "reviewed", "phase", "patient_id", "availability")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Task":
        values = {name: row[name] for name in cls.COLUMNS}
        values["delete_after"], values["reviewed"] = bool(values["delete_after"]), bool(values["reviewed"])
        return cls(**values)

    def as_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Claim:
    """Due tasks of one destination that one worker took, atomically."""
    owner: str
    destination: str
    tasks: tuple[Task, ...]


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt of `task` achieved, and the state policy.decide() chose."""
    task: Task
    delivered_ids: Sequence[str]
    failed: int
    state: str
    expected: int = 0
    retry_in: Optional[float] = None
    error: Optional[str] = None
    interrupted: bool = False         # stopped by the router stopping: not counted as an attempt


@dataclass(frozen=True)
class Job:
    """A transfer job as stored, with the counts of its tasks (its status is derived from them)."""
    id: int
    created_at: float
    created_by: str
    source: str
    destination: str
    profile: Optional[str]
    urgent: bool
    paused: bool
    canceled: bool
    trial: Mapping[str, str]
    tasks: Mapping[str, int]          # state -> number of tasks
    instances_expected: int = 0
    instances_delivered: int = 0
    bytes: int = 0
    started_at: Optional[float] = None
    last_finished_at: Optional[float] = None
    subscription_id: Optional[int] = None   # the subscription whose job this is
    phase: Optional[str] = None       # QUERYING (items resolved in the background), READY (resolved, not
                                      # started), None (started)
    items: Mapping[str, int] = dataclasses.field(default_factory=dict)   # Total, Resolved, Failed (background)
    pause_seconds: float = 0.0        # a break between the studies of the job (subscriptions)
    check_error: Optional[str] = None # why the source or destination did not answer the pre-check


@dataclass(frozen=True)
class Subscription:
    """A source queried on a schedule; what it finds becomes tasks of its job (see
    courier.transfer.schedule for the parts of time it looks at)."""
    id: int
    name: Optional[str]
    created_at: float
    created_by: str
    job_id: int
    spec: Mapping[str, Any]           # the request as validated: Query, Match, From, Till, Schedule...
    start_day: str                    # YYYYMMDD: the present part begins here
    past_end: Optional[str]           # last day of the past part
    backfill_next: Optional[str]      # first day of the past not transferred yet (None: done)
    backfill_at: Optional[float]      # earliest next look at the past
    since: str                        # day of the last complete run of the present part
    next_run_at: Optional[float]      # the next scheduled run (None: nothing scheduled)
    paused: bool
    last_run_at: Optional[float]
    last_error: Optional[str]
    runs: int
    last_run: Optional[Mapping[str, Any]]

    COLUMNS = ("id", "name", "created_at", "created_by", "job_id", "spec", "start_day", "past_end", "backfill_next",
               "backfill_at", "since", "next_run_at", "paused", "last_run_at", "last_error", "runs", "last_run")


@dataclass(frozen=True)
class Found:
    """A study a subscription run found at its source, and what it already transferred of it."""
    study_uid: str
    patient_id: str
    study_date: str
    instances: int                    # the source's count now
    known: Optional[int] = None       # the count recorded at its last transfer; None: never transferred
    busy: bool = False                # its last task is still PENDING or RUNNING
    availability: str = ""            # InstanceAvailability, as the source answered


@dataclass(frozen=True)
class Arrival:
    """One instance as it arrived (a NewInstance change), with what completion needs to know."""
    instance_id: str
    series_id: str
    study_id: str
    sop_instance_uid: str
    size: int
    modality: str
    series_description: str
    seq: int                          # the change's Seq: what is newer than the last routing


@dataclass(frozen=True)
class Pending:
    """A series or study that arrived, or grew, since a route last completed it."""
    level: str                        # Series | Study
    resource_id: str
    study_id: str
    instances: int                    # all instances so far
    new_instances: int                # since the route last completed it
    first_at: float                   # first of the new instances (store clock)
    last_at: float                    # last arrival (store clock)
    last_seq: int
    routed_seq: int                   # 0: never completed for this route
    forced_at: Optional[float]
    modalities: tuple[str, ...] = ()            # of its series (a study) or its own (a series)
    series_descriptions: tuple[str, ...] = ()
