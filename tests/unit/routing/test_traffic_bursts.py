"""The follower's C-STORE bursts: instances of one caller less than the gap apart make one event;
another caller, outcome or a pause another; REST arrivals are not DICOM traffic."""
from courier.routing.follower import Bursts, reception_time


def meta(second, aet="CT1", origin="DicomProtocol"):
    return {"Origin": origin, "RemoteAET": aet, "CalledAET": "COURIER", "RemoteIP": "10.0.0.5",
            "ReceptionDate": f"20240131T1200{second:02d}"}


def test_reception_dates_are_utc_and_a_missing_one_is_now():
    assert reception_time({"ReceptionDate": "20240131T120000"}, 0) == 1706702400.0
    assert reception_time({}, 42.0) == 42.0 and reception_time({"ReceptionDate": "garbage"}, 7.0) == 7.0


def test_instances_group_by_caller_and_gap_and_rest_arrivals_are_left_out():
    bursts = Bursts(lambda: 0.0, gap=5)
    for second in (0, 1, 3):
        bursts.add(meta(second), 100)
    bursts.add(meta(2, aet="MR2"), 10)
    bursts.add(meta(20), 100)                                       # a pause: a new burst
    bursts.add(meta(21), 0, refusal="connected from 10.0.0.5, not from its declared host")
    bursts.add(meta(22, origin="RestApi"), 100)
    bursts.add(None, 100)
    summary = [(e.calling_aet, e.status, e.operations, e.instances, e.bytes, e.last_at - e.at) for e in bursts.events]
    assert summary == [("CT1", "accepted", 3, 3, 300, 3.0), ("MR2", "accepted", 1, 1, 10, 0.0),
                       ("CT1", "accepted", 1, 1, 100, 0.0), ("CT1", "refused", 1, 1, 0, 0.0)]
    assert all(e.service == "C-STORE" and e.called_aet == "COURIER" and e.remote_ip == "10.0.0.5" for e in bursts.events)
