"""The traffic routes: the event Courier's Lua script posts (no Content-Type, no user: Orthanc's
internal call; only the fields it names are kept), the filters' checks, the UI page's paging."""
import json

from test_api import api, call

from courier.host import HttpRequest


def post_event(a, event):
    response = a.handle(HttpRequest("POST", "/courier/traffic/events", {}, json.dumps(event).encode(), {}))
    return response.status, json.loads(response.body)


def test_the_lua_event_is_recorded_without_the_query_and_bad_ones_are_refused(tmp_path):
    a, store = api(tmp_path)
    assert post_event(a, {"Service": "C-FIND", "CallingAet": "WS1", "CalledAet": "COURIER", "RemoteIp": "10.1.1.1",
                          "Level": "study"}) == (200, {"Recorded": True})
    assert post_event(a, {"Service": "C-FIND", "CallingAet": "WS1", "PatientName": "Doe^J"})[0] == 400   # no other field
    assert post_event(a, {"Service": "C-STORE", "CallingAet": "WS1"})[0] == 400
    assert post_event(a, {"Service": "C-FIND", "CallingAet": "W" * 65})[0] == 400
    status, page = call(a, "GET", "/courier/traffic", service="C-FIND")
    assert status == 200 and page["total"] == 1
    entry = page["entries"][0]
    assert (entry["CallingAet"], entry["CalledAet"], entry["RemoteIp"], entry["Detail"], entry["Status"]) == (
        "WS1", "COURIER", "10.1.1.1", "STUDY", "accepted")


def test_filters_are_checked(tmp_path):
    a, _ = api(tmp_path)
    assert call(a, "GET", "/courier/traffic", service="C-PUSH")[0] == 400
    assert call(a, "GET", "/courier/traffic", status="maybe")[0] == 400
    assert call(a, "GET", "/courier/traffic", since="yesterday")[0] == 400
    assert call(a, "GET", "/courier/traffic", **{"from": "31/01/2024"})[0] == 400
    assert call(a, "GET", "/courier/traffic", **{"from": "2024-01-31", "to": "2024-01-31"})[1]["total"] == 0
    response = a.handle(HttpRequest("GET", "/courier/traffic.csv", {"status": "refused"}, b"", {}))
    assert response.status == 200 and response.body.decode().startswith("id,first_at,last_at,service")


def test_the_page_pages(tmp_path):
    from courier.store.records import TrafficEvent
    a, store = api(tmp_path)
    store.traffic.record([TrafficEvent("C-FIND", f"AE{i}", "accepted", 1000.0 + i) for i in range(150)])
    html = a.handle(HttpRequest("GET", "/courier/ui/traffic", {}, b"", {})).body.decode()
    assert "150 row(s), 1 to 100 shown" in html and 'id="next" href="traffic?offset=100"' in html
    assert 'id="previous"' not in html
    html = a.handle(HttpRequest("GET", "/courier/ui/traffic", {"offset": "100", "service": "C-FIND"}, b"", {})).body.decode()
    assert "101 to 150 shown" in html and 'id="next"' not in html
    assert 'href="traffic?service=C-FIND&amp;offset=0"' in html
