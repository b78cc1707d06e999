import pytest

from courier.config.match import MatchSyntaxError, compile_condition
from courier.config.routes import Route
from courier.routing.rules import evaluate


@pytest.mark.parametrize("spec,value,expected", [
    ("CT", "CT", True), ("CT", "MR", False), ("CT", None, False), ("CT", "", False),
    ("CT*", "CTA", True), ("?R", "MR", True), ("?R", "MRI", False),
    ("LOCALIZER", "ORIGINAL\\PRIMARY\\LOCALIZER", True),
    (["CT", "MR"], "MR", True), (["CT", "MR"], "US", False),
    (5, "5", True), (5, "5.0", True), (5, "6", False),
    ({"regex": "^AX"}, "AXIAL 1", True), ({"regex": "^AX"}, "COR", False),
    ({"lt": 20240101}, "20231231", True), ({"lt": "2024-01-01"}, "20240101", False),
    ({"gte": 3}, "3", True), ({"gt": 3}, "garbage", False),
    ({"not": "CT"}, "MR", True), ({"not": "CT"}, None, True), ({"not": "CT"}, "CT", False),
    ({"exists": True}, "x", True), ({"exists": True}, "", False), ({"exists": False}, None, True),
    ("a[b", "a[b", True),
])
def test_conditions(spec, value, expected):
    assert compile_condition(spec)(value) is expected


@pytest.mark.parametrize("spec", [True, [], {"regex": "("}, {"lt": "soon"}, {"nope": 1}, {"lt": 1, "gt": 0}, None])
def test_malformed_conditions_are_refused(spec):
    with pytest.raises(MatchSyntaxError):
        compile_condition(spec)


def route(name, trigger="Instance", fallback=False, allowed=None, script=None, **match):
    return Route(name=name, trigger=trigger, match=tuple((k, compile_condition(v)) for k, v in match.items()),
                 destinations=("d",), fallback=fallback, allowed_calling_aets=allowed, condition_script=script)


def names(result):
    return [r.name for r in result.fired]


def test_all_matching_routes_fire_in_order_and_fallback_stays_quiet():
    routes = [route("ct", Modality="CT"), route("any-ct", Modality="C*"), route("rest", fallback=True)]
    assert names(evaluate(routes, "Instance", {"Modality": "CT"})) == ["ct", "any-ct"]


def test_fallback_fires_when_nothing_else_matches():
    routes = [route("ct", Modality="CT"), route("rest", fallback=True)]
    assert names(evaluate(routes, "Instance", {"Modality": "MR"})) == ["rest"]


def test_fallback_considers_routes_of_other_triggers():
    routes = [route("ct-study", trigger="StableStudy", Modality="CT"), route("rest", fallback=True)]
    assert names(evaluate(routes, "Instance", {"Modality": "CT"})) == []
    assert names(evaluate(routes, "StableStudy", {"Modality": "CT"})) == ["ct-study"]


def test_only_routes_of_the_trigger_fire():
    routes = [route("series", trigger="StableSeries"), route("instance")]
    assert names(evaluate(routes, "StableSeries", {})) == ["series"]


def test_allowed_calling_aets_refuse_and_are_reported():
    routes = [route("mr", allowed=("MRI1",), Modality="MR"), route("rest", fallback=True)]
    result = evaluate(routes, "Instance", {"Modality": "MR", "CallingAet": "OTHER"})
    assert names(result) == ["rest"]
    assert result.refused[0][0].name == "mr" and "OTHER" in result.refused[0][1]
    assert names(evaluate(routes, "Instance", {"Modality": "MR", "CallingAet": "MRI1"})) == ["mr"]


def test_condition_script_decides_and_its_errors_are_reported():
    def run(route, tags):
        if tags.get("boom"):
            raise ValueError("bad script")
        return tags.get("Modality") == "CT"
    routes = [route("scripted", script="x.py"), route("rest", fallback=True)]
    assert names(evaluate(routes, "Instance", {"Modality": "CT"}, run)) == ["scripted"]
    assert names(evaluate(routes, "Instance", {"Modality": "MR"}, run)) == ["rest"]
    result = evaluate(routes, "Instance", {"boom": 1}, run)
    assert names(result) == ["rest"] and "bad script" in result.errors[0][1]
