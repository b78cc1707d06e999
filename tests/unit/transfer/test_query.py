import datetime

import pytest

from courier.errors import ApiError, DeliveryError
from courier.transfer.query import matches, parse_date_range, resolve_dates, split_range, validate
from courier.transfer.remote import find


def test_validate_names_the_bad_field():
    assert validate({"Node": "pacs", "Level": "study", "Filters": {"PatientID": "P1"}}) == \
        (["pacs"], "STUDY", {"PatientID": "P1"})
    assert validate({"Nodes": ["a", "b", "a"]})[0] == ["a", "b"]
    for body, words in [({}, "Node:"), ({"Nodes": []}, "Nodes: a list"), ({"Node": "a", "Nodes": ["b"]}, "not both"),
                        ({"Nodes": ["a", 3]}, "Nodes: a list"), ({"Node": "p", "Level": "IMAGE"}, "Level:"),
                        ({"Node": "p", "Filters": {"Modality": "CT"}}, "Filters.Modality: not a filter at level STUDY"),
                        ({"Node": "p", "Filters": {"StudyDate": "2024"}}, "Filters.StudyDate: expected YYYYMMDD"),
                        ({"Node": "p", "Filters": {"StudyDate": "20240201-20240101"}}, "ends before it starts"),
                        ({"Node": "p", "Filters": {"PatientID": 5}}, "expected a string")]:
        with pytest.raises(ApiError) as caught:
            validate(body)
        assert caught.value.status == 400 and words in caught.value.message


@pytest.mark.parametrize("answer,filters,expected", [
    ({"PatientName": "DOE^JANE"}, {"PatientName": "doe*"}, True),
    ({"PatientName": "DOE^JANE"}, {"PatientName": "Roe*"}, False),
    ({"StudyDate": "20240115"}, {"StudyDate": "20240101-20240131"}, True),
    ({"StudyDate": "20240215"}, {"StudyDate": "20240101-20240131"}, False),
    ({"StudyDate": "20240215"}, {"StudyDate": "-20240131"}, False),
    ({"ModalitiesInStudy": "CT\\SR"}, {"ModalitiesInStudy": "CT"}, True),
    ({"ModalitiesInStudy": "MR"}, {"ModalitiesInStudy": "CT\\PT"}, False),
    ({"AccessionNumber": "A1"}, {"AccessionNumber": "A2"}, False),
    ({"AccessionNumber": "A1"}, {"AccessionNumber": "*"}, True),
])
def test_local_refilter(answer, filters, expected):
    assert matches(answer, filters) is expected


def test_split_range():
    today = datetime.date(2024, 12, 31)
    assert split_range("20240101-20240131", today) == ("20240101-20240116", "20240117-20240131")
    assert split_range("20240101", today) is None
    first, second = split_range("", today)
    assert first.startswith("19000101-") and second.endswith("-20241231")
    assert parse_date_range("20240101-") == (datetime.date(2024, 1, 1), None)


STUDIES = [{"StudyInstanceUID": f"1.2.{n}", "PatientID": f"P{n % 3}", "StudyDate": f"202401{n + 1:02d}",
            "ModalitiesInStudy": "CT" if n % 2 else "MR"} for n in range(20)]


def sloppy_pacs(cap):
    """Honours StudyDate only, ignores every other key, answers at most `cap` results."""
    calls = []

    def search(rest, node, level, keys):
        calls.append(dict(keys))
        first, last = parse_date_range(keys["StudyDate"]) if keys.get("StudyDate") else (None, None)
        found = [s for s in STUDIES if (not first or s["StudyDate"] >= first.strftime("%Y%m%d"))
                 and (not last or s["StudyDate"] <= last.strftime("%Y%m%d"))]
        return found[:cap]
    return search, calls


def test_find_refilters_and_splits_capped_answers():
    search, calls = sloppy_pacs(cap=5)
    result = find(None, "pacs", "STUDY", {"StudyDate": "20240101-20240120", "ModalitiesInStudy": "CT"}, max_results=5,
                  today=datetime.date(2024, 12, 31), search=search)
    assert [a["StudyInstanceUID"] for a in result["Answers"]] == [f"1.2.{n}" for n in range(1, 20, 2)]
    assert result["Refiltered"] == 10 and result["Splits"] >= 3
    assert all(call["ModalitiesInStudy"] == "CT" and "PatientName" in call for call in calls)


def test_a_cap_that_cannot_be_split_is_an_error_not_a_silent_truncation():
    search, _ = sloppy_pacs(cap=1)
    with pytest.raises(DeliveryError, match="cannot be split further"):
        find(None, "pacs", "STUDY", {"StudyDate": "20240101"}, max_results=1, search=search,
             today=datetime.date(2024, 12, 31))
    search, _ = sloppy_pacs(cap=2)
    one_day = find(None, "pacs", "STUDY", {"StudyDate": "20240101"}, max_results=2, search=search)
    assert [a["StudyInstanceUID"] for a in one_day["Answers"]] == ["1.2.0"]      # under the cap: complete


def test_an_answer_without_the_filtered_key_is_kept_and_the_key_reported():
    """DCMTK's dcmqrscp ignores ModalitiesInStudy and does not return it; it returns no SeriesDescription."""
    assert matches({"StudyInstanceUID": "1.2"}, {"StudyDescription": "knee*"}) is True
    assert matches({"StudyDescription": ""}, {"StudyDescription": "knee*"}) is False      # returned empty: refuted
    series = {"1.2.1": ["CT", "SR"], "1.2.2": ["MR"]}

    def search(rest, node, level, keys):
        if level == "SERIES":
            return [{"StudyInstanceUID": keys["StudyInstanceUID"], "Modality": m} for m in series[keys["StudyInstanceUID"]]]
        return [{"StudyInstanceUID": uid, "PatientID": "P"} for uid in series]     # no ModalitiesInStudy, no description
    result = find(None, "qr", "STUDY", {"ModalitiesInStudy": "MR", "StudyDescription": "knee*"}, search=search)
    assert [(a["StudyInstanceUID"], a["ModalitiesInStudy"]) for a in result["Answers"]] == [("1.2.2", "MR")]
    assert result["NarrowedBySeries"] == ["ModalitiesInStudy"] and result["NotAppliedByNode"] == ["StudyDescription"]


@pytest.mark.parametrize("text, expected", [
    ("TODAY", "20260331"), ("yesterday", "20260330"), ("-7d", "20260324"), ("-30d-", "20260301-"),
    ("-7d-YESTERDAY", "20260324-20260330"), ("20240101-TODAY", "20240101-20260331"), ("-2w--1d", "20260317-20260330"),
    ("-1m", "20260228"), ("-1y", "20250331"), ("+1d", "20260401"),
    ("20240101", "20240101"), ("-20240131", "-20240131"), ("20240101-20240131", "20240101-20240131")])
def test_relative_dates_become_absolute(text, expected):
    assert resolve_dates(text, datetime.date(2026, 3, 31)) == expected


@pytest.mark.parametrize("text", ["", "-", "x", "-7x", "TODAY-20240101", "2024"])
def test_bad_relative_dates_are_refused(text):
    with pytest.raises(ValueError):
        resolve_dates(text, datetime.date(2026, 3, 31))


def test_query_filters_take_relative_dates():
    today = datetime.date(2026, 3, 31)
    assert validate({"Node": "p", "Filters": {"StudyDate": "-1d-TODAY"}}, today)[2] == {"StudyDate": "20260330-20260331"}
    with pytest.raises(ApiError, match="Filters.StudyDate: expected YYYYMMDD.*relative"):
        validate({"Node": "p", "Filters": {"StudyDate": "-1q"}}, today)
