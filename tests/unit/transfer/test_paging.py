"""QIDO pagination (transfer.remote.paginate), without Orthanc."""
import pytest

from courier.errors import DeliveryError
from courier.transfer.remote import OffsetIgnored, Paged, find, paginate, qido_search


def capped_server(rows, cap, honours_offset=True):
    asked = []

    def page(offset, limit):
        asked.append((offset, limit))
        start = offset if honours_offset else 0
        return rows[start:start + min(limit, cap)]
    return page, asked


def test_pages_are_asked_until_one_comes_back_short():
    rows = [{"n": i} for i in range(7)]
    page, asked = capped_server(rows, cap=3)
    assert paginate(page, 3) == rows
    assert asked == [(0, 3), (3, 3), (6, 3)]


def test_an_exact_multiple_ends_with_an_empty_page():
    rows = [{"n": i} for i in range(6)]
    page, asked = capped_server(rows, cap=3)
    assert paginate(page, 3) == rows and asked[-1] == (6, 3)


def test_answers_given_twice_are_kept_once_and_a_server_ignoring_offset_is_told():
    page, _ = capped_server([{"n": 1}, {"n": 2}, {"n": 3}], cap=2, honours_offset=False)
    with pytest.raises(OffsetIgnored):
        paginate(page, 2)
    overlapping = iter([[{"n": 1}, {"n": 2}], [{"n": 2}, {"n": 3}], [{"n": 4}]])
    assert paginate(lambda o, limit: next(overlapping), 2) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]


def test_endless_pages_stop_with_an_error():
    counter = iter(range(10 ** 6))
    with pytest.raises(DeliveryError, match="more than 5 pages"):
        paginate(lambda o, limit: [{"n": next(counter)} for _ in range(limit)], 2, max_pages=5)


class FakeRest:
    """orthanc-dicomweb's /get with a server that caps QIDO answers at `cap`."""

    def __init__(self, studies, cap, honours_offset=True):
        self.studies, self.cap, self.honours_offset, self.asked = studies, cap, honours_offset, []

    def post_json(self, path, body, timeout=None):
        args = body["Arguments"]
        self.asked.append(dict(args))
        offset = int(args.get("offset", 0)) if self.honours_offset else 0
        limit = min(int(args.get("limit", 10 ** 6)), self.cap)
        return [{"0020000D": {"vr": "UI", "Value": [uid]}, "00100020": {"vr": "LO", "Value": ["P"]},
                 "00080020": {"vr": "DA", "Value": ["20240101"]}} for uid in self.studies[offset:offset + limit]]


def test_qido_search_pages_and_find_does_not_split_a_paged_answer():
    rest = FakeRest([f"1.2.{i}" for i in range(5)], cap=2)
    found = qido_search(rest, "web", "STUDY", {"StudyInstanceUID": "", "PatientID": ""}, page_size=2)
    assert isinstance(found, Paged) and [r["StudyInstanceUID"] for r in found] == [f"1.2.{i}" for i in range(5)]
    assert [(a["offset"], a["limit"]) for a in rest.asked] == [("0", "2"), ("2", "2"), ("4", "2")]
    answer = find(rest, "web", "STUDY", {}, max_results=2,
                  search=lambda *a: qido_search(*a, page_size=2))
    assert len(answer["Answers"]) == 5 and answer["Splits"] == 0


def test_a_server_ignoring_offset_is_a_capped_answer_for_find():
    rest = FakeRest([f"1.2.{i}" for i in range(5)], cap=2, honours_offset=False)
    found = qido_search(rest, "web", "STUDY", {"StudyInstanceUID": ""}, page_size=2)
    assert not isinstance(found, Paged) and len(found) == 2
