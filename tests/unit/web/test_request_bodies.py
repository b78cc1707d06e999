"""The one validation layer of request bodies (issue #11, items 8 and 9): the bounded parser, the
schema subset, the route table's declarations and what the dispatcher answers with them."""
import json

import pytest

from courier.config.parse import parse
from courier.errors import ApiError
from courier.host import HttpRequest
from courier.store.store import Store
from courier.web.bodies import Body
from courier.web.http import Context
from courier.web.routes import ENDPOINTS, Api, openapi_document
from courier.web.schema import check_query, nesting_depth, parse_json, validate

CONFIG = parse({"DicomModalities": {"pacs": ["PACS", "127.0.0.1", 104], "d": ["D", "127.0.0.1", 105]},
                "Courier": {"Routes": [{"Name": "r", "Destinations": ["d"]}]}}, "/", "/")
JSON = {"content-type": "application/json"}


@pytest.fixture
def api(tmp_path):
    return Api(Context(CONFIG, Store(str(tmp_path / "c.sqlite")), lambda: True, pseudonymizers={"p": object()}))


def post(api_, path, body, headers=JSON):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = api_.handle(HttpRequest("POST", path, {}, data, headers))
    return response.status, json.loads(response.body)


def error(function, *args):
    with pytest.raises(ApiError) as raised:
        function(*args)
    return raised.value.status, raised.value.message


# -- the bounded parser --------------------------------------------------------------------

def test_the_depth_is_counted_outside_strings_without_recursion():
    assert nesting_depth('{"a": [1, {"b": "[[[[{{{{"}], "c": "\\"]]]"}') == 3
    assert nesting_depth("[" * 100000 + "]" * 100000) == 100000
    assert nesting_depth("[" * 100000, stop_above=32) == 33          # stops early


def test_a_deep_body_is_refused_before_json_loads_sees_it():
    assert error(parse_json, b"[" * 600 + b"]" * 600) == (400, "the body is nested deeper than 32 levels of arrays and objects")
    assert parse_json(b'[' * 32 + b']' * 32) is not None
    assert parse_json(b"") == {}                                      # no body: nothing to say


@pytest.mark.parametrize("data, words", [(b"\xff{}", "not UTF-8"), (b"{", "not JSON"), (b'{"a": NaN}', "NaN"),
                                         (b'{"a": 1e999}', "too large"), (b"1" * 5000, "not JSON")])
def test_what_is_not_json_is_a_400(data, words):
    status, message = error(parse_json, data)
    assert status == 400 and words in message


# -- the schema subset ------------------------------------------------------------------------

ITEMS = {"type": "object", "required": ["Items"], "properties": {
    "Items": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                         "properties": {"StudyInstanceUID": {"type": "string", "maxLength": 64}}}},
    "Kind": {"type": "string", "enum": ["a", "b"]}, "Urgent": {"type": "boolean"},
    "Name": {"type": "string", "nullable": True, "minLength": 1, "pattern": "^x"}}}


@pytest.mark.parametrize("body, message", [
    ({"Items": [{}, {}, {"StudyInstanceUID": 5}]}, "Items[2].StudyInstanceUID: expected a string, got an integer"),
    ({"Items": {}}, "Items: expected an array, got an object"),
    ({}, "Items: required"),
    ([], "the body: expected an object, got an array"),
    ({"Items": [{"Other": "x"}]}, "Items[0].Other: unknown field; use StudyInstanceUID"),
    ({"Items": [{"StudyInstanceUID": "1" * 65}]}, "Items[0].StudyInstanceUID: at most 64 characters, got 65"),
    ({"Items": [], "Kind": "c"}, 'Kind: one of a, b, got "c"'),
    ({"Items": [], "Urgent": 1}, "Urgent: expected true or false, got an integer"),
    ({"Items": [], "Urgent": None}, "Urgent: expected true or false, got null"),
    ({"Items": [], "Name": ""}, "Name: must not be empty"),
    ({"Items": [], "Name": "y"}, 'Name: expected a match of ^x, got "y"'),
])
def test_errors_name_the_json_path_of_the_field(body, message):
    assert error(validate, body, ITEMS) == (400, message)


def test_null_where_nullable_and_fields_the_schema_does_not_describe_pass():
    validate({"Items": [], "Name": None, "Extra": {"deep": [1, 2]}}, ITEMS)


@pytest.mark.parametrize("body, where", [
    ({"Items": [{"StudyInstanceUID": "1.2\ud800"}]}, "Items[0].StudyInstanceUID: contains a lone surrogate (U+D800"),
    ({"Items": [], "Extra": ["ok", "\udfff"]}, "Extra[1]: contains a lone surrogate (U+DFFF"),       # not in the schema
    ({"Items": [], "\udc80": 1}, "the body: a key contains a lone surrogate (U+DC80"),
])
def test_lone_surrogates_are_refused_wherever_they_are(body, where):
    status, message = error(validate, body, ITEMS)
    assert status == 400 and message.startswith(where)


def test_a_surrogate_pair_is_text():
    validate(parse_json(b'{"Items": [{"StudyInstanceUID": "\\ud83d\\ude00"}]}'), ITEMS)


def test_query_parameters_must_be_text():
    check_query({"route": "caf\u00e9"})
    assert error(check_query, {"route": "a\udcff"}) == (400, "query parameter 'route': not UTF-8 text")


# -- the route table ---------------------------------------------------------------------------

KEYWORDS = {"type", "nullable", "properties", "required", "additionalProperties", "items", "enum", "pattern",
            "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "description", "format"}


def _keywords(schema):
    found = set(schema)
    for sub in list(schema.get("properties", {}).values()) + [schema.get("items"), schema.get("additionalProperties")]:
        if isinstance(sub, dict):
            found |= _keywords(sub)
    return found


def test_every_post_route_declares_its_body_and_the_validator_knows_every_keyword():
    for endpoint in ENDPOINTS:
        assert (endpoint.body is not None) == (endpoint.method in ("POST", "PUT")), endpoint.pattern
        if endpoint.body is not None and endpoint.body.schema is not None:
            assert _keywords(endpoint.body.schema) <= KEYWORDS, endpoint.pattern


def test_the_openapi_document_shows_the_schema_the_dispatcher_applies():
    document = openapi_document()
    for endpoint in ENDPOINTS:
        if endpoint.body is None:
            assert "requestBody" not in document["paths"]["/courier/" + endpoint.pattern][endpoint.method.lower()]
            continue
        body = document["paths"]["/courier/" + endpoint.pattern][endpoint.method.lower()]["requestBody"]
        if endpoint.body.schema is not None:
            assert body["content"]["application/json"]["schema"] is endpoint.body.schema
        for media, _ in endpoint.body.raw:
            assert body["content"][media]["schema"] == {"type": "string", "format": "binary"}
    json.dumps(document)


def test_a_body_is_read_as_json_unless_the_route_takes_that_media_type_raw():
    both = Body({"type": "object"}, max_bytes=10, raw=(("application/dicom", 100),))
    assert both.limit("application/json") == (10, True) and both.limit("") == (10, True)
    assert both.limit("application/dicom") == (100, False)
    assert Body(raw=(("text/csv", 5),)).limit("application/json") == (5, False)


# -- the dispatcher ----------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, message", [
    ("/courier/jobs", {"Source": ["pacs"], "Destination": "d", "Items": [{"PatientID": "P"}]},
     "Source: expected a string, got an array"),
    ("/courier/jobs", {"Source": "pacs", "Destination": {"id": "d"}, "Items": [{"PatientID": "P"}]},
     "Destination: expected a string, got an object"),
    ("/courier/jobs", {"Source": "pacs", "Destination": "d", "Pseudonymize": ["p"], "Items": [{"PatientID": "P"}]},
     "Pseudonymize: expected a string, got an array"),
    ("/courier/jobs", {"Source": "pacs", "Destination": "d", "Items": [{"PatientID": "P"}, {"StudyInstanceUID": 1}]},
     "Items[1].StudyInstanceUID: expected a string, got an integer"),
    ("/courier/jobs/batch", {"File": "eA==", "Source": {"a": 1}}, "Source: expected a string, got an object"),
    ("/courier/jobs/batch", {"File": "eA==", "Source": "pacs", "Destination": ["d"]},
     "Destination: expected a string, got an array"),
    ("/courier/jobs/batch", {"File": "eA==", "Source": "pacs", "Pseudonymize": {}},
     "Pseudonymize: expected a string, got an object"),
    ("/courier/send", ["00000000-00000000-00000000-00000000-00000000"], "the body: expected an object, got an array"),
    ("/courier/send", {"Study": "00000000-00000000-00000000-00000000-00000000", "Destination": ["d"]},
     "Destination: expected a string, got an array"),
    ("/courier/routes/test", "PatientID=1", "the body: expected an object, got a string"),
    ("/courier/jobs/1/priority", [True], "the body: expected an object, got an array"),
    ("/courier/query", {"Node": "pacs", "Filters": {"PatientID": "P\ud800"}}, "Filters.PatientID: contains a lone surrogate"),
    ("/courier/jobs", b"[" * 600 + b"]" * 600, "the body is nested deeper than 32 levels"),
])
def test_wrong_json_types_are_a_400_naming_the_field_before_any_handler_runs(api, path, body, message):
    status, answer = post(api, path, body)
    assert status == 400 and answer["error"].startswith(message) and answer["status"] == 400, answer


def test_a_body_over_the_route_limit_is_a_413(api):
    status, answer = post(api, "/courier/jobs", b" " * (1024 * 1024 + 1))
    assert (status, answer) == (413, {"error": "the body is 1048577 bytes; POST /courier/jobs takes at most 1 MiB",
                                      "status": 413})


def test_a_csv_field_over_the_csv_limit_is_a_400(api):
    status, answer = post(api, "/courier/crosswalk/p/lookup", b"PatientID,Pseudonym\n" + b"x" * 200000 + b",y\n",
                          {"content-type": "text/csv"})
    assert status == 400 and answer["error"].startswith("uploaded file: not a CSV table") and "131072" in answer["error"]


def test_semantic_checks_stay_with_the_handlers(api):
    status, answer = post(api, "/courier/jobs", {"Source": "nowhere", "Destination": "d", "Items": [{"PatientID": "P"}]})
    assert status == 400 and answer["error"].startswith("Source: 'nowhere' is neither")


def test_a_wrong_method_names_the_allowed_ones(api):
    for method, path, allowed in (("PUT", "/courier/tasks", "GET"), ("PUT", "/courier/jobs/3", "GET, DELETE"),
                                  ("GET", "/courier/jobs/3/cancel", "POST"), ("POST", "/courier/ui/", "GET"),
                                  ("PUT", "/courier/jobs", "POST, GET")):
        response = api.handle(HttpRequest(method, path, {}, b"{}", JSON))
        assert response.status == 405 and response.headers["Allow"] == allowed, (method, path)
        assert json.loads(response.body)["status"] == 405


def test_a_query_parameter_that_is_not_text_is_a_400(api):
    response = api.handle(HttpRequest("GET", "/courier/tasks", {"route": "\udcff"}, b"", {}))
    assert response.status == 400 and json.loads(response.body)["error"] == "query parameter 'route': not UTF-8 text"


def test_a_bug_in_a_handler_is_still_a_json_answer(api, monkeypatch):
    from courier.web import api_status
    monkeypatch.setattr(api_status, "status", lambda ctx, request, args: 1 / 0)
    monkeypatch.setattr("courier.web.routes.ENDPOINTS", tuple(
        e if e.pattern != "status" else type(e)(e.method, e.pattern, api_status.status, e.summary) for e in ENDPOINTS))
    response = api.handle(HttpRequest("GET", "/courier/status", {}, b"", {}))
    assert response.status == 500 and json.loads(response.body) == {
        "error": "internal error (ZeroDivisionError); see Orthanc's log", "status": 500}


def test_numbers_outside_minimum_and_maximum_are_refused():
    schema = {"type": "object", "properties": {"MaxStudiesPerRun": {"type": "integer", "minimum": 1, "maximum": 10}}}
    validate({"MaxStudiesPerRun": 10}, schema)
    for value in (0, 11):
        with pytest.raises(ApiError, match=f"MaxStudiesPerRun: from 1 to 10, got {value}"):
            validate({"MaxStudiesPerRun": value}, schema)
