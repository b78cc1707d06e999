import datetime

import pytest

from courier.config.windows import is_open, next_open, parse

MONDAY = datetime.datetime(2024, 1, 1)        # a Monday


def at(day_offset, hour, minute=0):
    return MONDAY + datetime.timedelta(days=day_offset, hours=hour, minutes=minute)


def test_office_hours():
    windows = [parse("Mon-Fri 08:00-17:00")]
    assert is_open(windows, at(0, 8)) and is_open(windows, at(4, 16, 59))
    assert not is_open(windows, at(0, 17)) and not is_open(windows, at(5, 10))


def test_night_window_belongs_to_the_day_it_starts():
    windows = [parse("Mon-Fri 18:00-07:00")]
    assert is_open(windows, at(4, 23)) and is_open(windows, at(5, 6, 59))      # Friday night into Saturday
    assert not is_open(windows, at(0, 6))                                       # Monday 06:00: Sunday started nothing
    assert not is_open(windows, at(5, 20))                                      # Saturday evening


def test_weekend_all_day_and_wrapping_day_ranges():
    assert is_open([parse("Sat-Sun 00:00-24:00")], at(6, 23, 59))
    assert parse("Sat-Mon 01:00-02:00")[0] == frozenset({5, 6, 0})


def test_no_windows_means_always_open_and_next_open():
    assert is_open([], at(2, 3))
    assert next_open([parse("Mon-Fri 18:00-07:00")], at(0, 9, 30)) == at(0, 18)
    assert next_open([parse("Sat 10:00-11:00")], at(5, 11)) == at(12, 10)


@pytest.mark.parametrize("text", ["Mon 18-07", "Funday 01:00-02:00", "Mon 25:00-26:00", "Mon 10:00-10:00", "Mon 10:61-11:00"])
def test_malformed_windows(text):
    with pytest.raises(ValueError):
        parse(text)
