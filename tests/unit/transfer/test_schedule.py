"""Subscription scheduling with an injected clock: cron and intervals, the parts of time a run
asks for, and validation of a subscription body."""
import copy
import datetime

import pytest

from courier.config.parse import parse
from courier.errors import ApiError
from courier.transfer import schedule
from courier.transfer.subscriptions import matches_locally, parts, validate

NOW = datetime.datetime(2026, 3, 31, 10, 7, 30)
TODAY = NOW.date()
CONFIG = parse({"HttpPort": 8100, "StorageDirectory": "/srv/orthanc",
                "DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104], "dest": ["DEST", "127.0.0.1", 105]},
                "Courier": {"Routes": []}}, "/etc/courier", "/repo")


def test_a_cron_schedule_gives_the_next_run_after_the_injected_now():
    timing = schedule.Timing(cron="*/15 * * * *")
    assert timing.next_after(NOW) == datetime.datetime(2026, 3, 31, 10, 15)
    nightly = schedule.Timing(cron="0 2 * * 1-5")           # weekdays at 02:00
    assert nightly.next_after(NOW) == datetime.datetime(2026, 4, 1, 2, 0)
    assert nightly.next_after(datetime.datetime(2026, 4, 3, 3, 0)) == datetime.datetime(2026, 4, 6, 2, 0)  # Fri -> Mon


def test_an_interval_and_no_schedule():
    assert schedule.parse_every("15m") == 900 and schedule.parse_every("2h") == 7200 and schedule.parse_every("30s") == 30
    assert schedule.Timing(every=900).next_after(NOW) == NOW + datetime.timedelta(minutes=15)
    assert schedule.Timing().next_after(NOW) is None
    for bad in ("15", "m", "-5m", "0m", "5 minutes"):
        with pytest.raises(ValueError):
            schedule.parse_every(bad)
    with pytest.raises(ValueError, match="not a cron expression"):
        schedule.check_cron("every day")


def test_the_past_is_split_into_partitions_oldest_first():
    windows, first = [], datetime.date(2026, 3, 20)
    while (window := schedule.past_window(first, datetime.date(2026, 3, 30), "Week")) is not None:
        windows.append(window.study_date)
        first = window.last + datetime.timedelta(days=1)
    assert windows == ["20260320-20260326", "20260327-20260330"]
    assert schedule.past_window(datetime.date(2026, 3, 29), datetime.date(2026, 3, 30), "Day").study_date == \
        "20260329-20260329"
    assert schedule.past_window(None, datetime.date(2026, 3, 30), "Day") is None


def test_the_present_window_overlaps_the_last_run_and_ends_at_till():
    start = datetime.date(2026, 3, 1)
    assert schedule.present_window(TODAY, TODAY, 1, None, start).study_date == "20260330-20260331"
    assert schedule.present_window(TODAY, TODAY, 1, None, TODAY).study_date == "20260331-20260331"   # not before From
    assert schedule.present_window(datetime.date(2026, 3, 28), TODAY, 2, datetime.date(2026, 3, 30), start).study_date \
        == "20260326-20260330"
    assert schedule.present_window(TODAY, TODAY, 0, datetime.date(2026, 3, 30), start) is None       # Till has passed
    assert schedule.present_window(TODAY, TODAY, 1, None, datetime.date(2026, 4, 5)) is None          # From to come
    assert schedule.finished(datetime.date(2026, 3, 30), TODAY, past_done=True)
    assert not schedule.finished(datetime.date(2026, 3, 30), TODAY, past_done=False)
    assert not schedule.finished(None, TODAY, past_done=True)


def body(**changes):
    base = {"Source": "pacs", "Destination": "dest", "Every": "15m"}
    return {**copy.deepcopy(base), **changes}


def test_a_subscription_body_made_absolute_and_split_in_parts():
    spec = validate(body(From="-10d", Query={"ModalitiesInStudy": "CT"}, Match={"StudyDescription": "^CHEST",
                                                                              "Modality": ["CT"]}), CONFIG, TODAY)
    assert spec["From"] == "20260321" and spec["EverySeconds"] == 900 and spec["MaxStudiesPerRun"] == 100
    assert parts(spec, TODAY) == ("20260331", "20260330", "20260321")
    assert parts(validate(body(), CONFIG, TODAY), TODAY) == ("20260331", None, None)          # no From: no past
    past_only = validate({"Source": "pacs", "Destination": "dest", "From": "20260101", "Till": "20260110"}, CONFIG, TODAY)
    assert parts(past_only, TODAY) == ("20260331", "20260110", "20260101")


@pytest.mark.parametrize("changes, words", [
    ({"Source": "nowhere"}, "Source:"), ({"Destination": "nope"}, "Destination:"),
    ({"Every": None}, "Schedule: a cron expression"), ({"Schedule": "*/5 * * * *"}, "not both"),
    ({"Every": "soon"}, "Every: expected a positive number"), ({"From": "-10q"}, "From: expected YYYYMMDD"),
    ({"From": "-10d-TODAY"}, "From: one day"), ({"From": "20260301", "Till": "20260201"}, "Till: 20260201 is before"),
    ({"Query": {"StudyDate": "20260101"}}, "Query.StudyDate: a subscription chooses"),
    ({"Query": {"Modality": "CT"}}, "Query.Modality: not a filter at level STUDY"),
    ({"Match": {"StudyDescription": "(unclosed"}}, "Match.StudyDescription: not a regular expression"),
    ({"Match": {"Modality": "CT"}}, "Match.Modality: a non-empty list"), ({"Match": {"Colour": "x"}}, "Match: an object"),
    ({"Partition": "Month"}, "Partition: one of Day, Week"), ({"MaxStudiesPerRun": 0}, "MaxStudiesPerRun: expected"),
    ({"PauseBetweenStudiesSeconds": -1}, "PauseBetweenStudiesSeconds"), ({"Colour": 1}, "Colour: unknown field")])
def test_bad_subscription_bodies_name_the_field(changes, words):
    with pytest.raises(ApiError) as raised:
        validate({k: v for k, v in body(**changes).items() if v is not None}, CONFIG, TODAY)
    assert raised.value.status == 400 and words in raised.value.message, raised.value.message


def test_local_match_on_description_and_modalities():
    match = {"StudyDescription": "CHEST", "Modality": ["CT", "PT"]}
    assert matches_locally({"StudyDescription": "CT CHEST W/O", "ModalitiesInStudy": "CT\\SR"}, match)
    assert not matches_locally({"StudyDescription": "CT HEAD", "ModalitiesInStudy": "CT"}, match)
    assert not matches_locally({"StudyDescription": "CHEST", "ModalitiesInStudy": "MR"}, match)
    assert matches_locally({}, {})
