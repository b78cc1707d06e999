"""Pure query logic: validate filters, re-filter answers locally, split capped date ranges.

Some PACS ignore filter keys or answer at most N results without saying so (ADIT's users hit
both). Courier therefore checks every answer against the filters itself, and when a C-FIND
returns as many answers as the node's cap it halves the StudyDate range and asks again.
"""
from __future__ import annotations

import datetime
import re
from typing import Any, Mapping, Optional

from courier.errors import ApiError

LEVELS = ("PATIENT", "STUDY", "SERIES")
FILTERS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate"),
    "STUDY": ("PatientID", "PatientName", "PatientBirthDate", "StudyDate", "AccessionNumber", "ModalitiesInStudy",
              "StudyDescription", "StudyInstanceUID"),
    "SERIES": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "StudyDate"),
}
RETURNED = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"),
    "STUDY": ("PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
              "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances", "InstanceAvailability"),
    "SERIES": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber",
               "NumberOfSeriesRelatedInstances", "InstanceAvailability"),
}
_DATE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_TOKEN = r"TODAY|YESTERDAY|[+-]?\d{1,4}[DWMY]|\d{8}"
_RELATIVE = re.compile(rf"^(?P<first>{_TOKEN})?(?P<dash>-)?(?P<last>{_TOKEN})?$")


def _relative_day(token: str, today: datetime.date) -> str:
    if token.isdigit():
        return token
    if token in ("TODAY", "YESTERDAY"):
        return (today - datetime.timedelta(days=int(token == "YESTERDAY"))).strftime("%Y%m%d")
    count, unit = int(token[:-1]), token[-1]
    if unit in "DW":
        return (today + datetime.timedelta(days=count * (7 if unit == "W" else 1))).strftime("%Y%m%d")
    months = today.year * 12 + today.month - 1 + count * (12 if unit == "Y" else 1)
    year, month = divmod(months, 12)
    day = today.day
    while True:                                  # the same day of the month, or its last day
        try:
            return datetime.date(year, month + 1, day).strftime("%Y%m%d")
        except ValueError:
            day -= 1


def resolve_dates(text: str, today: datetime.date) -> str:
    """Relative dates made absolute: "TODAY", "YESTERDAY", "-7d" (days; w weeks, m months, y
    years, counted from today), alone or as either end of a range: "-30d-" (the last 30 days on),
    "-7d-YESTERDAY", "20240101-TODAY". Absolute dates and ranges come back unchanged; ValueError
    if the text is neither."""
    found = _RELATIVE.match(text.strip().upper()) if text else None
    if not found or not (found.group("first") or found.group("last")):
        raise ValueError(f"expected YYYYMMDD, a range YYYYMMDD-YYYYMMDD, or relative dates (TODAY, YESTERDAY, -7d, "
                         f"-2w, -1m, -1y, e.g. -30d-TODAY), got {text!r}")
    first, last = (found.group(n) and _relative_day(found.group(n), today) for n in ("first", "last"))
    resolved = (first or "") + (found.group("dash") or "") + (last or "")
    parse_date_range(resolved)
    return resolved


def parse_date_range(text: str) -> tuple[Optional[datetime.date], Optional[datetime.date]]:
    """"20240101", "20240101-20240131", "-20240131", "20240101-" -> (first, last); ValueError if malformed."""
    found = _DATE.match(text.replace("-", "-").strip())
    if not text or not found or (found.group(2) is None and found.group(3)):
        raise ValueError(f"expected YYYYMMDD or a range YYYYMMDD-YYYYMMDD, got {text!r}")
    day = lambda s: datetime.datetime.strptime(s, "%Y%m%d").date() if s else None  # noqa: E731
    first, last = day(found.group(1)), day(found.group(3))
    if found.group(2) is None:
        last = first
    if first and last and first > last:
        raise ValueError(f"the range {text!r} ends before it starts")
    return first, last


def format_range(first: Optional[datetime.date], last: Optional[datetime.date]) -> str:
    f = first.strftime("%Y%m%d") if first else ""
    l = last.strftime("%Y%m%d") if last else ""  # noqa: E741
    return f if first == last and first else f"{f}-{l}"


MAX_NODES = 16


def validate(body: Any, today: Optional[datetime.date] = None) -> tuple[list[str], str, dict[str, str]]:
    """(nodes, level, filters) from a POST /courier/query body (`Node`, or `Nodes` to ask several
    at once), relative dates made absolute; ApiError naming the field."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object with Node (or Nodes), Level and Filters")
    level, filters = str(body.get("Level", "STUDY")).upper(), body.get("Filters", {})
    if "Nodes" in body:
        nodes = body["Nodes"]
        if "Node" in body:
            raise ApiError(400, "Nodes: give Node or Nodes, not both")
        if (not isinstance(nodes, list) or not nodes or len(nodes) > MAX_NODES
                or not all(isinstance(n, str) and n for n in nodes)):
            raise ApiError(400, f"Nodes: a list of 1 to {MAX_NODES} node ids")
        nodes = list(dict.fromkeys(nodes))
    else:
        node = body.get("Node")
        if not isinstance(node, str) or not node:
            raise ApiError(400, "Node: the id of a DICOM modality is required")
        nodes = [node]
    if level not in LEVELS:
        raise ApiError(400, f"Level: one of {', '.join(LEVELS)}, got {body.get('Level')!r}")
    if not isinstance(filters, dict):
        raise ApiError(400, "Filters: expected an object of DICOM keyword -> value")
    clean = {}
    for key, value in filters.items():
        if key not in FILTERS[level]:
            raise ApiError(400, f"Filters.{key}: not a filter at level {level}; use {', '.join(FILTERS[level])}")
        if not isinstance(value, str):
            raise ApiError(400, f"Filters.{key}: expected a string, got {type(value).__name__}")
        if key in ("StudyDate", "PatientBirthDate") and value:
            try:
                value = resolve_dates(value, today or datetime.date.today())
            except ValueError as exc:
                raise ApiError(400, f"Filters.{key}: {exc}") from None
        clean[key] = value
    return nodes, level, clean


def _wildcard(pattern: str, value: str, case_insensitive: bool) -> bool:
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, re.IGNORECASE if case_insensitive else 0) is not None


def unanswered(answer: Mapping[str, str], filters: Mapping[str, str]) -> set[str]:
    """Filter keys with a value that the answer does not carry at all: the node neither applied nor
    returned them (DCMTK's dcmqrscp ignores ModalitiesInStudy, returns no SeriesDescription)."""
    return {key for key, wanted in filters.items() if wanted not in ("", "*") and key not in answer}


def matches(answer: Mapping[str, str], filters: Mapping[str, str]) -> bool:
    """Does one answer satisfy the filters, as a PACS that honours them would have checked? A key
    the answer does not carry cannot refute it (see `unanswered`)."""
    for key, wanted in filters.items():
        if wanted in ("", "*") or key not in answer:
            continue
        value = str(answer.get(key, "") or "")
        if key in ("StudyDate", "PatientBirthDate"):
            first, last = parse_date_range(wanted)
            try:
                day = datetime.datetime.strptime(value[:8], "%Y%m%d").date()
            except ValueError:
                return False
            if (first and day < first) or (last and day > last):
                return False
        elif key == "ModalitiesInStudy":
            wanted_set = {m.strip() for m in wanted.split("\\") if m.strip()}
            if not wanted_set & {m.strip() for m in value.split("\\")}:
                return False
        elif key == "PatientName":
            if not _wildcard(wanted, value, True) and not _wildcard(wanted, value.replace("^", " "), True):
                return False
        elif not _wildcard(wanted, value, False):
            return False
    return True


def split_range(text: str, today: datetime.date) -> Optional[tuple[str, str]]:
    """Two halves of a StudyDate range, or None when it is a single day (cannot split further)."""
    first, last = parse_date_range(text) if text else (None, None)
    first = first or datetime.date(1900, 1, 1)
    last = last or today
    if first >= last:
        return None
    middle = first + (last - first) // 2
    return format_range(first, middle), format_range(middle + datetime.timedelta(days=1), last)
