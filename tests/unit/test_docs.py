"""The README documents every configuration key and every REST route (datasette's test_docs idea)."""
from pathlib import Path

import pytest

from courier.config.reader import KEYS
from courier.web.routes import ENDPOINTS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
ALL_KEYS = [f"{section}.{key}" for section, keys in KEYS.items() for key in keys]


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_config_key_is_in_the_configuration_reference(key):
    reference = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    assert f"`{key}`" in reference, f"{key} is missing from the README's configuration reference"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.pattern}")
def test_every_rest_route_is_documented(endpoint):
    assert f"`{endpoint.method} /courier/{endpoint.pattern}`" in README
