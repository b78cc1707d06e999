import json

from courier.config.parse import parse
from courier.host import HttpRequest
from courier.store.records import NewTask
from courier.store.store import Store
from courier.web.http import Context
from courier.web.routes import ENDPOINTS, Api, openapi_document

CONFIG = parse({"DicomModalities": {"d": ["D", "127.0.0.1", 104]},
                "Courier": {"Routes": [{"Name": "r", "Destinations": ["d"]}]}}, "/", "/")


def api(tmp_path, healthy=True):
    store = Store(str(tmp_path / "c.sqlite"))
    return Api(Context(CONFIG, store, lambda: healthy)), store


def call(api_, method, path, headers=None, **query):
    if headers is None:
        headers = {} if method == "GET" else {"content-type": "application/json"}
    response = api_.handle(HttpRequest(method, path, {k: str(v) for k, v in query.items()}, b"", headers))
    return response.status, json.loads(response.body)


def test_health_follows_the_workers(tmp_path):
    assert call(api(tmp_path, healthy=False)[0], "GET", "/courier/health")[0] == 503
    assert call(api(tmp_path)[0], "GET", "/courier/health") == (200, {"status": "ok"})


def test_bad_input_gets_a_json_error_with_a_message(tmp_path):
    a, _ = api(tmp_path)
    assert call(a, "GET", "/courier/tasks", state="DONE") == (400, {
        "error": "query parameter 'state': unknown state 'DONE'; one of PENDING, RUNNING, SUCCESS, WARNING, FAILURE, CANCELED",
        "status": 400})
    assert call(a, "GET", "/courier/tasks", limit="many")[1]["error"].startswith("query parameter 'limit'")
    assert call(a, "GET", "/courier/tasks/99")[0] == 404
    assert call(a, "DELETE", "/courier/tasks")[0] == 405
    assert call(a, "GET", "/courier/nothing")[0] == 404


def test_retry_and_cancel_follow_the_state_machine(tmp_path):
    a, store = api(tmp_path)
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1")])
    assert call(a, "POST", "/courier/tasks/1/retry")[0] == 409
    status, task = call(a, "POST", "/courier/tasks/1/cancel")
    assert status == 200 and task["state"] == "CANCELED"
    status, task = call(a, "POST", "/courier/tasks/1/retry")
    assert status == 200 and task["state"] == "PENDING"
    actions = [e["action"] for e in call(a, "GET", "/courier/audit")[1]["entries"]]
    assert actions[:2] == ["task-retried", "task-cancelled"]


def test_openapi_lists_every_endpoint():
    document = openapi_document()
    for endpoint in ENDPOINTS:
        assert endpoint.method.lower() in document["paths"]["/courier/" + endpoint.pattern]


def test_state_changing_requests_refuse_what_a_cross_site_form_can_send(tmp_path):
    a, store = api(tmp_path)
    store.tasks.enqueue([NewTask("r", "d", "Instance", "i1")])
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/x-www-form-urlencoded"},
                    {"content-type": "multipart/form-data; boundary=x"}):
        status, body = call(a, "POST", "/courier/tasks/1/cancel", headers=headers)
        assert status == 415 and "Content-Type" in body["error"]
    assert call(a, "POST", "/courier/tasks/1/cancel", headers={"content-type": "application/json"})[0] == 200
    assert call(a, "GET", "/courier/tasks", headers={})[0] == 200                # reads need nothing
