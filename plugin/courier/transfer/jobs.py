"""Transfer jobs: request validation, items -> studies, and a job's derived status and progress.

A job brings studies from a source node to a destination, optionally pseudonymized; it holds
one task per study and its status is derived from them.
"""
from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from courier.config import windows
from courier.config.modify import parse_modify
from courier.config.parse import CourierConfig
from courier.config.profiles import TRIAL_KEYWORDS
from courier.errors import ApiError, ConfigError, DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import CANCELED, FAILURE, PENDING, RUNNING, SUCCESS, WARNING, Job, JobTarget, orthanc_id
from courier.transfer.query import resolve_dates
from courier.transfer.remote import find, search_of

ITEM_KEYS = ("StudyInstanceUID", "AccessionNumber", "PatientID", "StudyDate", "ModalitiesInStudy",
             "SeriesInstanceUID", "Modality", "SeriesDescription", "Transfer")
TRANSFERS = ("Study", "SearchedModalities")    # the whole study, or only its series of ModalitiesInStudy
SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesDescription")
MAX_STUDIES = 10000
BACKGROUND_ITEMS = 20          # a job with more items is resolved in the background (QUERYING)
STARTS = ("now", "manual")


@dataclass(frozen=True)
class JobRequest:
    """A POST /courier/jobs body, checked."""
    source: str
    destination: str
    profile: Optional[str]
    urgent: bool
    items: list[dict]
    archive_password: Optional[str] = field(default=None, repr=False)
    trial: Mapping[str, str] = field(default_factory=dict)    # DICOM keyword -> value
    start: str = "now"                                          # or "manual": READY until started
    modify: Optional[dict] = None                               # a Modify (config.modify), as given

    @property
    def in_background(self) -> bool:
        return self.start == "manual" or len(self.items) > BACKGROUND_ITEMS


def check_transfer(body: dict, config: CourierConfig) -> JobRequest:
    """Source, Destination, Pseudonymize, Trial, Urgent and ArchivePassword of a job or a
    subscription body, checked (items empty)."""
    source, destination = body.get("Source"), body.get("Destination")
    if source not in config.nodes or config.nodes[source].kind not in ("dicom", "dicomweb"):
        raise ApiError(400, f"Source: {source!r} is neither a DICOM modality nor a DICOMweb server")
    finder = "QIDO" if config.nodes[source].kind == "dicomweb" else "C-FIND"
    for needed in (finder, config.node_settings[source].retrieve_method):
        if needed not in config.node_settings[source].capabilities:
            raise ApiError(400, f"Source: {source!r} does not offer {needed} (Courier.Nodes.{source}.Capabilities)")
    if destination not in config.destinations:
        raise ApiError(400, f"Destination: no destination named {destination!r}")
    password = body.get("ArchivePassword")
    if password is not None:
        if config.destinations.get(destination) != "archive":
            raise ApiError(400, "ArchivePassword: only for an archive destination (Courier.Archives)")
        if not isinstance(password, str) or len(password) < 8:
            raise ApiError(400, "ArchivePassword: at least 8 characters")
    elif config.destinations.get(destination) == "archive" and not config.archives[destination].password:
        raise ApiError(400, f"ArchivePassword: required, archive {destination!r} has no configured password")
    profile = body.get("Pseudonymize")
    if profile is not None and profile not in config.profiles:
        raise ApiError(400, f"Pseudonymize: no pseudonymization profile {profile!r}")
    trial = body.get("Trial") or {}
    if not isinstance(trial, dict) or any(k not in TRIAL_KEYWORDS or not isinstance(v, str) for k, v in trial.items()):
        raise ApiError(400, f"Trial: an object of strings with keys among {', '.join(TRIAL_KEYWORDS)}")
    if trial and profile is None:
        raise ApiError(400, "Trial: clinical trial attributes are written by pseudonymization; set Pseudonymize")
    if not isinstance(body.get("Urgent", False), bool):
        raise ApiError(400, "Urgent: expected true or false")
    return JobRequest(source, destination, profile, body.get("Urgent", False), [], password,
                      {TRIAL_KEYWORDS[k]: v for k, v in trial.items()})


def validate(body: Any, config: CourierConfig, today: Optional[datetime.date] = None) -> JobRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with Source, Destination and Items")
    fields = ("Source", "Destination", "Pseudonymize", "Urgent", "ArchivePassword", "Trial", "Items", "Start", "Transfer",
              "Modify")
    unknown = [k for k in body if k not in fields]
    if unknown:
        raise ApiError(400, f"{unknown[0]}: unknown field; use {', '.join(fields)}")
    transfer = check_transfer(body, config)
    start = body.get("Start", "now")
    if start not in STARTS:
        raise ApiError(400, f"Start: one of {', '.join(STARTS)}, got {start!r}")
    default = body.get("Transfer", "Study")
    if default not in TRANSFERS:
        raise ApiError(400, f"Transfer: one of {', '.join(TRANSFERS)}, got {default!r}")
    items = [item if "Transfer" in item or default == "Study" else dict(item, Transfer=default)
             for item in check_items(body.get("Items"), today)]
    return dataclasses.replace(transfer, items=items, start=start, modify=check_modify(body.get("Modify")))


def check_modify(raw: Any) -> Optional[dict]:
    """A job's Modify: as a route's, but without a Script (scripts are the configuration's)."""
    if raw is None:
        return None
    try:
        modification = parse_modify(raw, "Modify")
    except ConfigError as exc:
        raise ApiError(400, f"{exc.path}: {exc.problem}") from None
    if modification.script:
        raise ApiError(400, "Modify.Script: a job's Modify takes no script; name it on a route instead")
    return raw if modification else None


def check_items(items: Any, today: Optional[datetime.date] = None) -> list[dict]:
    """The Items of a job, relative dates made absolute; ApiError naming the item."""
    items = list(items) if isinstance(items, list) else items
    if not isinstance(items, list) or not items:
        raise ApiError(400, "Items: a non-empty list of {StudyInstanceUID} | {AccessionNumber} | {PatientID, StudyDate, "
                            "ModalitiesInStudy}, each optionally with SeriesInstanceUID, Modality, SeriesDescription")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item or any(k not in ITEM_KEYS for k in item):
            raise ApiError(400, f"Items[{index}]: an object with keys among {', '.join(ITEM_KEYS)}")
        if not any(item.get(k) for k in ("StudyInstanceUID", "AccessionNumber", "PatientID")):
            raise ApiError(400, f"Items[{index}]: needs StudyInstanceUID, AccessionNumber or PatientID")
        if not all(isinstance(v, str) for v in item.values()):
            raise ApiError(400, f"Items[{index}]: values must be strings")
        if item.get("Transfer", "Study") not in TRANSFERS:
            raise ApiError(400, f"Items[{index}].Transfer: one of {', '.join(TRANSFERS)}, got {item['Transfer']!r}")
        if item.get("StudyDate"):
            try:
                items[index] = dict(item, StudyDate=resolve_dates(item["StudyDate"], today or datetime.date.today()))
            except ValueError as exc:
                raise ApiError(400, f"Items[{index}].StudyDate: {exc}") from None
    return items


def resolve(rest: OrthancRest, config: CourierConfig, source: str, items: list[dict]) -> list[JobTarget]:
    """Each item -> the studies (or, with a series filter, the series) the source holds for it
    (C-FIND or QIDO, re-filtered locally). One job task per target."""
    search = search_of(config, source)
    targets: dict[tuple[str, str], JobTarget] = {}
    for index, item in enumerate(items):
        study_filters = {k: v for k, v in item.items() if v and k not in SERIES_KEYS and k != "Transfer"}
        series_filters = {k: v for k, v in item.items() if v and k in SERIES_KEYS}
        searched = {m.strip() for m in item.get("ModalitiesInStudy", "").split("\\") if m.strip()}
        only_searched = item.get("Transfer") == "SearchedModalities" and searched and "Modality" not in series_filters
        if only_searched:
            series_filters["Modality"] = ""               # asked for every series, kept by modality below
        try:
            studies = find(rest, source, "STUDY", study_filters, config.node_settings[source].max_results,
                           search=search)["Answers"]
            found = []
            for study in studies:
                study_id = orthanc_id(study["PatientID"], study["StudyInstanceUID"])
                if not series_filters:
                    found.append(JobTarget(study["StudyInstanceUID"], study_id, study_id,
                                           present_in_orthanc(rest, "studies", study_id), patient_id=study["PatientID"],
                                           availability=study.get("InstanceAvailability") or None))
                    continue
                answer = find(rest, source, "SERIES", {"StudyInstanceUID": study["StudyInstanceUID"],
                                                       "PatientID": study["PatientID"], **series_filters}, search=search)
                unchecked = [k for k in answer["NotAppliedByNode"] if k in series_filters]
                if unchecked:
                    raise ApiError(409, f"Items[{index}].{unchecked[0]}: {source} does not return {unchecked[0]} at series "
                                        f"level, so Courier cannot select series by it; use SeriesInstanceUID or Modality")
                for one in answer["Answers"]:
                    if only_searched and one.get("Modality") not in searched:
                        continue
                    series_id = orthanc_id(study["PatientID"], study["StudyInstanceUID"], one["SeriesInstanceUID"])
                    found.append(JobTarget(study["StudyInstanceUID"], series_id, study_id,
                                           present_in_orthanc(rest, "series", series_id), one["SeriesInstanceUID"],
                                           study["PatientID"], one.get("InstanceAvailability")
                                           or study.get("InstanceAvailability") or None))
        except DeliveryError as exc:
            raise ApiError(502, f"Items[{index}]: query on {source}: {exc}") from None
        if not found:
            raise ApiError(404, f"Items[{index}]: {source} holds no study or series matching {item}")
        for target in found:
            targets.setdefault((target.study_uid, target.series_uid or ""), target)
        if len(targets) > MAX_STUDIES:
            raise ApiError(400, f"Items: more than {MAX_STUDIES} studies or series; split the job")
    return list(targets.values())


def present_in_orthanc(rest: OrthancRest, level_path: str, resource_id: str) -> bool:
    try:
        rest.get_json(f"/{level_path}/{resource_id}")
        return True
    except DeliveryError:
        return False


def _direct(job: Job, settings) -> bool:
    """A direct C-MOVE: the instances never pass through Courier, whose byte count is unknown."""
    return bool(settings and not job.profile and job.destination in settings.direct_move_to)


def summary(job: Job, now: float, config: Optional[CourierConfig] = None) -> dict:
    """The job with its derived status and progress (tasks, instances, bytes, rate, ETA); a job
    whose source is outside its time windows is WAITING_FOR_WINDOW, with the next opening."""
    tasks = job.tasks
    total = sum(tasks.values())
    done = tasks[SUCCESS] + tasks[WARNING] + tasks[FAILURE] + tasks[CANCELED]
    if job.canceled:
        status = "CANCELED"
    elif job.phase in ("QUERYING", "READY"):
        status = job.phase
    elif job.check_error and tasks[PENDING] and not tasks[RUNNING]:
        status = "UNREACHABLE"
    elif tasks[PENDING] or tasks[RUNNING]:
        status = "PAUSED" if job.paused else ("RUNNING" if tasks[RUNNING] or done else "PENDING")
    elif tasks[SUCCESS] == total:
        status = "SUCCESS"
    else:
        status = "WARNING" if tasks[SUCCESS] or job.instances_delivered else "FAILURE"
    elapsed = max((job.last_finished_at if status in ("SUCCESS", "WARNING", "FAILURE", "CANCELED") and job.last_finished_at
                   else now) - (job.started_at or now), 1e-6)
    rate = job.instances_delivered / elapsed
    remaining = max(job.instances_expected - job.instances_delivered, 0)
    next_window = None
    settings = config.node_settings.get(job.source) if config else None
    if status in ("PENDING", "RUNNING") and not tasks[RUNNING] and settings and settings.windows:
        local = datetime.datetime.fromtimestamp(now)
        if not windows.is_open(settings.windows, local):
            status = "WAITING_FOR_WINDOW"
            opening = windows.next_open(settings.windows, local)
            next_window = opening.isoformat(timespec="minutes") if opening else None
    return {"Id": job.id, "Status": status, "NextWindow": next_window, "Source": job.source, "Destination": job.destination,
            "Pseudonymize": job.profile, "Trial": dict(job.trial), "Urgent": job.urgent, "CreatedBy": job.created_by,
            "CreatedAt": job.created_at, "Tasks": {"Total": total, "Done": done, **tasks},
            "Instances": {"Expected": job.instances_expected, "Delivered": job.instances_delivered},
            "Bytes": None if _direct(job, settings) else job.bytes, "InstancesPerSecond": round(rate, 2),
            "EtaSeconds": round(remaining / rate) if rate > 0 and status in ("RUNNING", "PENDING") else None,
            "Items": dict(job.items) or None, "Subscription": job.subscription_id, "PrecheckError": job.check_error}
