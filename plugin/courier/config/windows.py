"""Pure: time windows such as "Mon-Fri 18:00-07:00" (local time) during which a node may be used.

A window belongs to the day it starts on: "Fri 18:00-07:00" runs from Friday 18:00 to Saturday
07:00. "24:00" ends a window at midnight. No windows at all means always open.
"""
from __future__ import annotations

import datetime
import re
from typing import Optional, Sequence

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WINDOW = re.compile(r"^(\w{3})(?:-(\w{3}))?\s+(\d{2}):(\d{2})-(\d{2}):(\d{2})$")

Window = tuple[frozenset, int, int]        # (weekdays 0-6 it starts on, start minute, end minute)


def parse(text: str) -> Window:
    found = _WINDOW.match(text.strip())
    if not found or found.group(1) not in DAYS or (found.group(2) and found.group(2) not in DAYS):
        raise ValueError(f"expected like 'Mon-Fri 18:00-07:00', got {text!r}")
    first = DAYS.index(found.group(1))
    last = DAYS.index(found.group(2)) if found.group(2) else first
    days = frozenset((first + i) % 7 for i in range((last - first) % 7 + 1))
    start = int(found.group(3)) * 60 + int(found.group(4))
    end = int(found.group(5)) * 60 + int(found.group(6))
    if start >= 24 * 60 or end > 24 * 60 or int(found.group(4)) > 59 or int(found.group(6)) > 59 or start == end:
        raise ValueError(f"invalid hours in {text!r}")
    return days, start, end


def is_open(windows: Sequence[Window], when: datetime.datetime) -> bool:
    if not windows:
        return True
    minute = when.hour * 60 + when.minute
    today, yesterday = when.weekday(), (when.weekday() - 1) % 7
    for days, start, end in windows:
        if start < end:
            if today in days and start <= minute < end:
                return True
        else:                                  # over midnight
            if (today in days and minute >= start) or (yesterday in days and minute < end):
                return True
    return False


def next_open(windows: Sequence[Window], when: datetime.datetime) -> Optional[datetime.datetime]:
    """The first minute at or after `when` inside a window (None if never within a week)."""
    probe = when.replace(second=0, microsecond=0)
    for _ in range(7 * 24 * 60 + 1):
        if is_open(windows, probe):
            return probe
        probe += datetime.timedelta(minutes=1)
    return None
