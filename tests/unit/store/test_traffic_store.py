"""The traffic log on both back-ends: bursts of one caller merge into one row within the gap, other
callers, services, outcomes or a later burst get rows of their own; filters and paging; C-STOREs
written with the change cursor, exactly once."""
from conftest import Clock
from courier.store.records import AuditEvent, TrafficEvent
from courier.store.traffic import GAP_SECONDS


def store_event(at, aet="CT1", instances=1, size=100, status="accepted", detail=""):
    return TrafficEvent("C-STORE", aet, status, at, at, called_aet="COURIER", remote_ip="127.0.0.1",
                        instances=instances, bytes=size, detail=detail)


def test_operations_of_one_caller_within_the_gap_make_one_row(make_store):
    clock = Clock(10_000.0)
    store = make_store(clock)
    store.traffic.record([store_event(10_000), store_event(10_002, instances=2, size=300)])
    store.traffic.record([store_event(10_002 + GAP_SECONDS - 0.5)])                      # still the same burst
    total, rows = store.traffic.entries()
    assert total == 1
    row = rows[0]
    assert (row["operations"], row["instances"], row["bytes"]) == (3, 4, 500)
    assert (row["first_at"], row["last_at"]) == (10_000, 10_002 + GAP_SECONDS - 0.5)
    assert (row["service"], row["calling_aet"], row["called_aet"], row["remote_ip"], row["status"]) == (
        "C-STORE", "CT1", "COURIER", "127.0.0.1", "accepted")


def test_a_pause_another_caller_service_or_outcome_starts_a_row(make_store):
    store = make_store(Clock(20_000.0))
    store.traffic.record([store_event(20_000), store_event(20_000 + GAP_SECONDS + 1),          # a pause: a new burst
                          store_event(20_001, aet="MR2"),
                          store_event(20_001, aet="EVIL", status="refused", detail="not declared")])
    store.traffic.record([TrafficEvent("C-FIND", "CT1", "accepted", 20_001, detail="STUDY")])
    store.traffic.record([TrafficEvent("C-FIND", "CT1", "accepted", 20_002, detail="STUDY")])
    total, rows = store.traffic.entries()
    assert total == 5
    finds = [r for r in rows if r["service"] == "C-FIND"]
    assert len(finds) == 1 and finds[0]["operations"] == 2 and finds[0]["instances"] == 0
    assert finds[0]["detail"] == "STUDY" and finds[0]["remote_ip"] == ""
    assert [r["last_at"] for r in rows] == sorted((r["last_at"] for r in rows), reverse=True)     # latest first


def test_filters_and_paging(make_store):
    store = make_store(Clock(30_000.0))
    store.traffic.record([store_event(30_000 + 100 * i, aet=f"AE{i % 2}") for i in range(6)])
    store.traffic.record([store_event(30_050, aet="BAD", status="refused", detail="unknown caller")])
    store.traffic.record([TrafficEvent("C-FIND", "AE0", "accepted", 30_060, detail="PATIENT")])
    assert store.traffic.entries()[0] == 8
    assert store.traffic.entries(service="C-FIND")[0] == 1
    assert store.traffic.entries(calling_aet="AE0")[0] == 4
    total, rows = store.traffic.entries(status="refused")
    assert total == 1 and rows[0]["calling_aet"] == "BAD" and rows[0]["detail"] == "unknown caller"
    assert store.traffic.entries(since=30_300)[0] == 3                                    # 30300, 30400, 30500
    assert store.traffic.entries(until=30_055)[0] == 2                                    # 30000, the refusal
    total, page = store.traffic.entries(limit=3, offset=6)
    assert total == 8 and len(page) == 2
    ids = [r["id"] for r in store.traffic.entries(limit=4)[1] + store.traffic.entries(limit=4, offset=4)[1]]
    assert len(set(ids)) == 8                                                             # pages do not overlap


def test_refusals_are_written_with_their_audit_line(make_store):
    store = make_store(Clock(40_000.0))
    store.traffic.record([store_event(40_000, aet="EVIL", status="refused", detail="r")],
                         audit=[AuditEvent("instance-rejected", actor="EVIL", detail={"reason": "r"})])
    assert store.audit.entries(action="instance-rejected")[0] == 1
    assert store.traffic.entries(status="refused")[0] == 1


def test_c_stores_go_with_the_change_cursor_exactly_once(make_store):
    store = make_store(Clock(50_000.0))
    store.tasks.enqueue([], cursor=("orthanc-changes", 0))
    assert store.tasks.enqueue([], cursor=("orthanc-changes", 10), expect=0, traffic=[store_event(50_000)]) is not None
    # another router that read the same page commits nothing, the traffic included
    assert store.tasks.enqueue([], cursor=("orthanc-changes", 10), expect=0, traffic=[store_event(50_000)]) is None
    reopened = make_store(Clock(50_000.0))
    total, rows = reopened.traffic.entries()
    assert total == 1 and rows[0]["instances"] == 1


def test_active_callers_are_those_whose_traffic_just_grew(make_store):
    store = make_store(Clock(20_000.0))
    store.traffic.record([store_event(19_990, aet="OLD"), store_event(19_998, aet="CT1"),
                          store_event(19_999, aet="BAD", status="refused", detail="no")])
    assert store.traffic.active(20_000.0) == [{"Service": "C-STORE", "CallingAet": "CT1", "Bursts": 1}]
    assert store.traffic.active(20_010.0) == []
