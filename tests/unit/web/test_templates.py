"""The UI's templates: each page's title is plain text (a block edited by mistake once carried a
whole table into <title>), and each page extends the base."""
import re
from pathlib import Path

import pytest

TEMPLATES = sorted((Path(__file__).resolve().parents[3] / "web" / "templates").glob("*.html"))


@pytest.mark.parametrize("template", [t for t in TEMPLATES if t.name != "base.html"], ids=lambda t: t.name)
def test_a_page_title_is_one_line_of_text(template):
    text = template.read_text()
    assert text.startswith('{% extends "base.html" %}')
    title = re.search(r"\{% block title %\}(.*?)\{% endblock %\}", text, re.S)
    assert title and "<" not in title.group(1) and "\n" not in title.group(1), title
    assert text.count("{% block main %}") == 1
