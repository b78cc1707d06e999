from pathlib import Path

import pytest

from courier.config.routes import Route
from courier.errors import ConfigError
from courier.routing.scripts import RouteContext, load_conditions, load_script

SCRIPTS = str(Path(__file__).resolve().parents[3] / "lua-free-scripts")


def ctx(aet=""):
    return RouteContext("r", "Instance", aet, "COURIER", "127.0.0.1")


def test_ct_without_localizers():
    match = load_script(SCRIPTS, "ct_without_localizers.py", "x")
    assert match({"Modality": "CT", "ImageType": "ORIGINAL\\PRIMARY\\AXIAL", "SeriesDescription": "Abdomen"}, ctx())
    assert not match({"Modality": "CT", "ImageType": "ORIGINAL\\PRIMARY\\LOCALIZER"}, ctx())
    assert not match({"Modality": "CT", "SeriesDescription": "Topogram 0.6 T20s"}, ctx())
    assert not match({"Modality": "MR"}, ctx())


def test_emergency_department():
    match = load_script(SCRIPTS, "emergency_department.py", "x")
    assert match({}, ctx("ED_CT1"))
    assert match({"StudyDescription": "CT head trauma"}, ctx("CT_MAIN"))
    assert not match({"StudyDescription": "CT head follow-up"}, ctx("CT_MAIN"))


def test_runner_passes_context_from_tags():
    route = Route("ed", "Instance", (), ("d",), condition_script="emergency_department.py")
    run = load_conditions(SCRIPTS, (route,))
    assert run(route, {"CallingAet": "ED_XR1"}) is True
    assert run(route, {"CallingAet": "OTHER"}) is False


def test_missing_or_broken_scripts_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"Courier.Routes\[0\].Condition: script 'nope.py' not found"):
        load_conditions(str(tmp_path), (Route("r", "Instance", (), ("d",), condition_script="nope.py"),))
    (tmp_path / "broken.py").write_text("def match(:\n")
    with pytest.raises(ConfigError, match="script .broken.py. line 1: invalid syntax"):
        load_script(str(tmp_path), "broken.py", "Courier.Routes[0].Condition")
    (tmp_path / "nomatch.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no match"):
        load_script(str(tmp_path), "nomatch.py", "Courier.Routes[0].Condition")
