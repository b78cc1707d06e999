"""pytest (default import mode) cannot collect two test modules with one basename: keep them unique."""
from collections import Counter
from pathlib import Path


def test_test_module_names_are_unique():
    names = Counter(p.name for p in (Path(__file__).resolve().parents[1]).rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
