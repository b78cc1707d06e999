"""The Dockerfile, docker-compose.yml and the cluster example stay in step with the Makefile and
with Courier's configuration parser."""
import json
import re
from pathlib import Path

import pytest

from courier.config.parse import parse

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(ROOT.glob("docker/*.json")) + [ROOT / "orthanc.json", ROOT / "cluster" / "router.json"]


def _makefile_list(name):
    return re.search(rf"^{name} := (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()


def test_the_image_installs_what_make_run_and_the_cluster_need():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in _makefile_list("DEB_PACKAGES") + ["orthanc-postgresql"]:
        assert re.search(rf"\b{package}\b", dockerfile), f"the Dockerfile does not install {package}"
    assert "requirements.txt" in dockerfile


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_configuration_is_valid(path):
    config = json.loads(path.read_text())
    if "Courier" in config:
        parse(config, str(path.parent), str(ROOT))


def test_compose_mounts_files_that_exist():
    compose = (ROOT / "docker-compose.yml").read_text()
    for mounted in re.findall(r"\./([\w./-]+):", compose):
        assert (ROOT / mounted).exists(), mounted
    for named in re.findall(r"/courier/(docker/[\w.-]+\.json)", compose):
        assert (ROOT / named).exists(), named


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_courier_configuration_loads_the_traffic_lua_script(path):
    config = json.loads(path.read_text())
    if "PythonScript" in config:
        scripts = [s for s in config.get("LuaScripts", []) if s.endswith("plugin/courier_traffic.lua")]
        assert scripts, f"{path.name}: LuaScripts lacks plugin/courier_traffic.lua (C-FINDs served, for the traffic log)"
        if not scripts[0].startswith("/courier/"):          # the Docker image's path
            assert (path.parent / scripts[0]).resolve().is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_courier_configuration_has_the_router_settings_the_tests_run_with(path):
    from harness import ROUTER_ORTHANC
    config = json.loads(path.read_text())
    if "PythonScript" in config:
        for key, value in ROUTER_ORTHANC.items():
            assert config.get(key) == value, f"{path.name}: {key} should be {json.dumps(value)} (README, Benchmarks)"
