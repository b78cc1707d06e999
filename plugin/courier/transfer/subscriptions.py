"""Subscriptions: a source asked on a schedule for what is new, and its past transferred in
partitions (ADIT's continuous transfer; the XNAT DICOM Router's scheduled pulls).

`validate` checks a POST /courier/subscriptions body; `Runner.run` does one run of a subscription
the scheduler leased: it asks the source for the StudyDate ranges that are due (see
courier.transfer.schedule), matches the answers locally, and hands the store the studies never
transferred or grown since, at most MaxStudiesPerRun, which become tasks of the subscription's job.
"""
from __future__ import annotations

import datetime
import re
from typing import Any, Callable, Optional

from courier.config import windows
from courier.config.parse import CourierConfig
from courier.errors import ApiError, DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import Found, JobTarget, Subscription, orthanc_id
from courier.store.store import Store
from courier.transfer import schedule
from courier.transfer.fetch import expected_uids
from courier.transfer.jobs import check_transfer, present_in_orthanc
from courier.transfer.query import FILTERS, resolve_dates
from courier.transfer.query import validate as validate_query
from courier.transfer.remote import find, search_of

FIELDS = ("Name", "Source", "Destination", "Pseudonymize", "Trial", "Urgent", "Query", "Match", "From", "Till",
          "Partition", "Schedule", "Every", "MaxStudiesPerRun", "PauseBetweenStudiesSeconds", "OverlapDays")
MATCH_KEYS = ("StudyDescription", "SeriesDescription", "Modality")
QUERY_KEYS = tuple(k for k in FILTERS["STUDY"] if k != "StudyDate")


def _day(body: dict, key: str, today: datetime.date) -> Optional[datetime.date]:
    value = body.get(key)
    if value in (None, ""):
        return None
    try:
        resolved = resolve_dates(str(value), today)
    except ValueError as exc:
        raise ApiError(400, f"{key}: {exc}") from None
    if "-" in resolved:
        raise ApiError(400, f"{key}: one day (YYYYMMDD, TODAY, -30d), not a range: {value!r}")
    return schedule.day(resolved)


def _number(body: dict, key: str, default: float, low: float, high: float, integer: bool = True) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or not low <= value <= high:
        raise ApiError(400, f"{key}: expected {'an integer' if integer else 'a number'} from {low:g} to {high:g}, "
                            f"got {value!r}")
    return value


def validate(body: Any, config: CourierConfig, today: datetime.date) -> dict:
    """The subscription as stored (its spec), with From and Till made absolute; ApiError naming the field."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with Source, Destination, and Schedule or Every")
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise ApiError(400, f"{unknown[0]}: unknown field; use {', '.join(FIELDS)}")
    transfer = check_transfer(body, config)
    name = body.get("Name")
    if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 64):
        raise ApiError(400, "Name: a string of 1 to 64 characters")
    query = body.get("Query") or {}
    if not isinstance(query, dict):
        raise ApiError(400, "Query: expected an object of DICOM keyword -> value (the filters of /courier/query)")
    if "StudyDate" in query:
        raise ApiError(400, "Query.StudyDate: a subscription chooses the study dates itself; use From and Till")
    try:
        _, _, query = validate_query({"Node": transfer.source, "Level": "STUDY", "Filters": query}, today)
    except ApiError as exc:
        raise ApiError(400, exc.message.replace("Filters.", "Query.", 1)) from None
    match = body.get("Match") or {}
    if not isinstance(match, dict) or any(k not in MATCH_KEYS for k in match):
        raise ApiError(400, f"Match: an object with keys among {', '.join(MATCH_KEYS)}")
    for key in ("StudyDescription", "SeriesDescription"):
        if key in match:
            if not isinstance(match[key], str):
                raise ApiError(400, f"Match.{key}: a regular expression (a string)")
            try:
                re.compile(match[key])
            except re.error as exc:
                raise ApiError(400, f"Match.{key}: not a regular expression: {exc}") from None
    if "Modality" in match and (not isinstance(match["Modality"], list) or not match["Modality"]
                                or not all(isinstance(m, str) and m for m in match["Modality"])):
        raise ApiError(400, 'Match.Modality: a non-empty list of modalities, e.g. ["CT", "MR"]')
    first, till = _day(body, "From", today), _day(body, "Till", today)
    if first and till and till < first:
        raise ApiError(400, f"Till: {till:%Y%m%d} is before From {first:%Y%m%d}")
    partition = body.get("Partition", "Day")
    if partition not in schedule.PARTITIONS:
        raise ApiError(400, f"Partition: one of {', '.join(schedule.PARTITIONS)}, got {partition!r}")
    cron, every = body.get("Schedule"), body.get("Every")
    if cron is not None and every is not None:
        raise ApiError(400, "Schedule: give Schedule (cron) or Every, not both")
    try:
        if cron is not None:
            schedule.check_cron(cron)
        seconds = schedule.parse_every(every) if every is not None else None
    except ValueError as exc:
        raise ApiError(400, f"{'Schedule' if cron is not None else 'Every'}: {exc}") from None
    if seconds is not None and seconds < 1:
        raise ApiError(400, "Every: at least 1s")
    if cron is None and every is None and not (till and till < today):
        raise ApiError(400, "Schedule: a cron expression (e.g. '*/15 * * * *') or Every (e.g. '15m') is needed to look "
                            "for new studies; only a subscription whose Till has passed can do without")
    return {"Name": name, "Source": transfer.source, "Destination": transfer.destination,
            "Pseudonymize": transfer.profile, "Trial": dict(transfer.trial), "Urgent": transfer.urgent,
            "Query": query, "Match": match, "From": schedule.text(first), "Till": schedule.text(till),
            "Partition": partition, "Schedule": cron, "Every": every, "EverySeconds": seconds,
            "MaxStudiesPerRun": _number(body, "MaxStudiesPerRun", 100, 1, 10000),
            "PauseBetweenStudiesSeconds": _number(body, "PauseBetweenStudiesSeconds", 0, 0, 86400, integer=False),
            "OverlapDays": _number(body, "OverlapDays", 1, 0, 30)}


FIXED = ("Source", "Destination", "Pseudonymize", "Trial", "Urgent", "From", "Till", "Partition")


def edited(old: dict, new: dict) -> list[str]:
    """The fields an edit changes; ApiError 409 naming one that cannot change (they decide what the
    subscription's job is and which past it transfers: make a new subscription for those)."""
    for key in FIXED:
        if (old.get(key) or None) != (new.get(key) or None):
            raise ApiError(409, f"{key}: cannot change on an existing subscription ({old.get(key)!r}); make a new one")
    return [key for key in new if old.get(key) != new.get(key)]


def parts(spec: dict, today: datetime.date) -> tuple[str, Optional[str], Optional[str]]:
    """(start_day, past_end, backfill_next) of a new subscription: the past ends the day before
    today (or at Till); with no From, or a From after it, there is no past."""
    first, till = schedule.day(spec.get("From")), schedule.day(spec.get("Till"))
    past_end = min(till, today - datetime.timedelta(days=1)) if till else today - datetime.timedelta(days=1)
    has_past = bool(first and first <= past_end)
    return schedule.text(today), schedule.text(past_end) if has_past else None, schedule.text(first) if has_past else None


def timing(spec: dict) -> schedule.Timing:
    return schedule.Timing(spec.get("Schedule"), spec.get("EverySeconds"))


def matches_locally(study: dict, match: dict) -> bool:
    """The study-level part of Match (StudyDescription, Modality); SeriesDescription needs its series."""
    if "StudyDescription" in match and not re.search(match["StudyDescription"], study.get("StudyDescription") or ""):
        return False
    if "Modality" in match:
        present = {m.strip() for m in (study.get("ModalitiesInStudy") or "").split("\\") if m.strip()}
        if not present & set(match["Modality"]):
            return False
    return True


class Runner:
    """One run of a leased subscription, against its source and the store."""

    def __init__(self, config: CourierConfig, store: Store, rest: OrthancRest,
                 now: Callable[[], datetime.datetime] = datetime.datetime.now) -> None:
        self.config, self.store, self.rest, self.now = config, store, rest, now

    def run(self, subscription: Subscription, owner: str) -> int:
        """Ask, match, record. Returns the number of tasks made (DeliveryError if the source fails)."""
        spec = subscription.spec
        source = spec["Source"]
        settings = self.config.node_settings[source]
        if not settings.enabled:
            raise DeliveryError(f"the source {source!r} is disabled in the configuration (Courier.Nodes.{source}.Enabled)")
        now = self.now()
        today = now.date()
        if settings.windows and not windows.is_open(settings.windows, now):
            opening = windows.next_open(settings.windows, now)
            self.store.subscriptions.postpone(subscription, owner, opening.timestamp() if opening else now.timestamp() + 3600)
            return 0
        clock = self.store.clock()
        due = []
        if subscription.next_run_at is not None and subscription.next_run_at <= clock:
            start = schedule.day(spec.get("From")) or schedule.day(subscription.start_day)
            due.append(schedule.present_window(schedule.day(subscription.since), today, spec["OverlapDays"],
                                               schedule.day(spec.get("Till")), start))
        if (subscription.backfill_next and (subscription.backfill_at or 0) <= clock
                and not self.store.subscriptions.busy_job(subscription.job_id)):
            due.append(schedule.past_window(schedule.day(subscription.backfill_next), schedule.day(subscription.past_end),
                                            spec["Partition"]))
        budget = spec["MaxStudiesPerRun"]
        chosen: list[tuple[Found, JobTarget]] = []
        state: dict[str, Any] = {}
        summary: dict[str, Any] = {"Windows": [], "Found": 0}
        for window in filter(None, due):
            taken_uids = {f.study_uid for f, _ in chosen}         # the windows of one run may overlap
            wanted = [f for f in self.store.subscriptions.known(subscription.id, self.found(spec, window))
                      if not f.busy and (f.known is None or f.instances > f.known) and f.study_uid not in taken_uids]
            summary["Windows"].append({"Part": window.part, "StudyDate": window.study_date, "New": len(wanted)})
            summary["Found"] += len(wanted)
            taken, budget = wanted[:budget], budget - len(wanted[:budget])
            chosen += [(f, self._target(f)) for f in taken]
            complete = len(taken) == len(wanted)
            if window.part == "present" and complete:
                state["since"] = schedule.text(today)
            if window.part == "past":
                following = window.last + datetime.timedelta(days=1)
                if complete:
                    state["backfill_next"] = (schedule.text(following)
                                              if following <= schedule.day(subscription.past_end) else None)
                state["backfill_at"] = clock if state.get("backfill_next", subscription.backfill_next) else None
        if subscription.next_run_at is not None and subscription.next_run_at <= clock:
            upcoming = timing(spec).next_after(now)
            past_done = state.get("backfill_next", subscription.backfill_next) is None
            ended = schedule.finished(schedule.day(spec.get("Till")), today, past_done)
            state["next_run_at"] = None if ended or upcoming is None else upcoming.timestamp()
        return self.store.subscriptions.record_run(subscription, owner, chosen, state, summary)

    def found(self, spec: dict, window: schedule.Window) -> list[Found]:
        """The studies of the window at the source that Match accepts, with their instance counts."""
        source = spec["Source"]
        search = search_of(self.config, source)
        answers = find(self.rest, source, "STUDY", {**spec["Query"], "StudyDate": window.study_date,
                                                   **({"ModalitiesInStudy": ""} if "Modality" in spec["Match"] else {})},
                       self.config.node_settings[source].max_results, search=search)["Answers"]
        found = []
        for study in answers:
            if not matches_locally(study, spec["Match"]) or not self._series_match(spec, study, search):
                continue
            count = str(study.get("NumberOfStudyRelatedInstances") or "")
            instances = int(count) if count.isdigit() else len(expected_uids(
                self.rest, source, study["StudyInstanceUID"], search, patient_id=study.get("PatientID") or None))
            found.append(Found(study["StudyInstanceUID"], study.get("PatientID", ""), study.get("StudyDate", ""),
                               instances, availability=study.get("InstanceAvailability") or ""))
        return found

    def _series_match(self, spec: dict, study: dict, search: Callable) -> bool:
        pattern = spec["Match"].get("SeriesDescription")
        if pattern is None:
            return True
        series = find(self.rest, spec["Source"], "SERIES", {"StudyInstanceUID": study["StudyInstanceUID"],
                                                           "PatientID": study.get("PatientID", "")}, search=search)
        return any(re.search(pattern, s.get("SeriesDescription") or "") for s in series["Answers"])

    def _target(self, found: Found) -> JobTarget:
        study_id = orthanc_id(found.patient_id, found.study_uid)
        return JobTarget(found.study_uid, study_id, study_id, present_in_orthanc(self.rest, "studies", study_id),
                         patient_id=found.patient_id, availability=found.availability or None)
