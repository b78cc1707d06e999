"""Pure scheduling of subscriptions: when the next run is due (a cron expression, read with
croniter, or an interval such as "15m"), and which StudyDate ranges a run asks the source for.

A subscription created on day D with `From` F and `Till` T looks at two parts of time:

    the past      F .. min(T, D-1), split into day or week partitions, transferred oldest first,
                  one partition per run, the next only once the studies of the last are done;
    the present   from D on (until T): at every scheduled run, StudyDate from the day of the
                  last complete run minus `OverlapDays` (a PACS indexes late) up to today.

Nothing here reads a clock: every function takes `now` or `today`.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Optional

from croniter import croniter

PARTITIONS = {"Day": 1, "Week": 7}
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> float:
    """ "15m", "2h", "1d", "30s" -> seconds; ValueError naming the form."""
    found = _EVERY.match(str(text))
    if not found or float(found.group(1)) <= 0:
        raise ValueError(f"expected a positive number and a unit s, m, h or d (e.g. 15m), got {text!r}")
    return float(found.group(1)) * _UNIT_SECONDS[found.group(2)]


def check_cron(expression: str) -> None:
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise ValueError(f"not a cron expression (minute hour day-of-month month day-of-week, e.g. '0 2 * * *'): "
                         f"{expression!r}")


@dataclass(frozen=True)
class Timing:
    cron: Optional[str] = None
    every: Optional[float] = None          # seconds

    def next_after(self, now: datetime.datetime) -> Optional[datetime.datetime]:
        """The first run strictly after `now` (local time), or None without a schedule."""
        if self.cron:
            return croniter(self.cron, now).get_next(datetime.datetime)
        if self.every:
            return now + datetime.timedelta(seconds=self.every)
        return None


def day(text: Optional[str]) -> Optional[datetime.date]:
    return datetime.datetime.strptime(text, "%Y%m%d").date() if text else None


def text(value: Optional[datetime.date]) -> Optional[str]:
    return value.strftime("%Y%m%d") if value else None


def partition(first: datetime.date, past_end: datetime.date, size: str) -> tuple[datetime.date, datetime.date]:
    """The partition of the past that starts at `first`: a day, or up to the end of its week."""
    last = first + datetime.timedelta(days=PARTITIONS[size] - 1)
    return first, min(last, past_end)


@dataclass(frozen=True)
class Window:
    """One StudyDate range a run asks for; `part` says which part of time it belongs to."""
    part: str                              # "present" | "past"
    first: datetime.date
    last: datetime.date

    @property
    def study_date(self) -> str:
        return f"{self.first:%Y%m%d}-{self.last:%Y%m%d}"


def present_window(since: datetime.date, today: datetime.date, overlap_days: int,
                   till: Optional[datetime.date], start: datetime.date) -> Optional[Window]:
    """The present part's range for a run on `today`; None once `Till` has passed."""
    last = min(today, till) if till else today
    first = max(since - datetime.timedelta(days=overlap_days), start)
    if first > last:                    # Till has passed, or From is still to come
        return None
    return Window("present", first, last)


def past_window(backfill_next: Optional[datetime.date], past_end: Optional[datetime.date],
                size: str) -> Optional[Window]:
    """The next partition of the past, or None when the past is done."""
    if backfill_next is None or past_end is None or backfill_next > past_end:
        return None
    first, last = partition(backfill_next, past_end, size)
    return Window("past", first, last)


def finished(till: Optional[datetime.date], today: datetime.date, past_done: bool) -> bool:
    """A subscription whose `Till` has passed and whose past is transferred has nothing left to do."""
    return bool(till and today > till and past_done)
