"""The checkout works on a machine that never had the project: nothing tracked points out of the
tree or at this machine, nothing tracked is something .gitignore ignores, and the Makefile never
trusts a venv it did not make."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


pytestmark = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")


def tracked_links_leaving_the_tree(root: Path, entries: str) -> list[str]:
    """Tracked symbolic links (mode 120000) whose target is absolute or resolves outside `root`."""
    bad = []
    for line in entries.splitlines():
        mode, _, _, path = line.split(None, 3)
        if mode != "120000":
            continue
        target = os.readlink(root / path)
        inside = os.path.realpath(root / path).startswith(str(root.resolve()) + os.sep)
        if os.path.isabs(target) or not inside:
            bad.append(f"{path} -> {target}")
    return bad


def test_no_tracked_link_leaves_the_tree_or_is_absolute():
    assert tracked_links_leaving_the_tree(ROOT, _git("ls-files", "-s")) == []


def test_the_link_check_catches_a_link_to_tmp(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".venv").symlink_to("/tmp/venvprobe")
    (tmp_path / "inside").symlink_to("README")
    (tmp_path / "README").write_text("x")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    entries = subprocess.run(["git", "ls-files", "-s"], cwd=tmp_path, check=True, capture_output=True,
                             text=True).stdout
    assert tracked_links_leaving_the_tree(tmp_path, entries) == [".venv -> /tmp/venvprobe"]


def test_nothing_tracked_is_ignored():
    assert _git("ls-files", "-ci", "--exclude-standard").split() == []


def _make_dry_run(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", "install"], cwd=workdir, capture_output=True, text=True)


@pytest.fixture
def makefile_copy(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for name in ("requirements.txt", "requirements-test.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_the_makefile_removes_a_venv_link_it_did_not_make(makefile_copy):
    (makefile_copy / ".venv").symlink_to("/tmp/somewhere-else")
    result = _make_dry_run(makefile_copy)
    assert "not a venv made here: removing the link" in result.stderr
    assert not os.path.lexists(makefile_copy / ".venv")


def test_the_makefile_stops_on_a_venv_it_cannot_recognise(makefile_copy):
    (makefile_copy / ".venv").mkdir()
    result = _make_dry_run(makefile_copy)
    assert result.returncode != 0
    assert "delete it (rm -r .venv)" in result.stderr
    assert (makefile_copy / ".venv").is_dir()             # never deletes what it does not know


def test_the_makefile_rebuilds_a_venv_of_another_interpreter(makefile_copy):
    fake = makefile_copy / ".venv"
    (fake / "bin").mkdir(parents=True)
    (fake / "pyvenv.cfg").write_text("home = /opt/other/bin\n")
    (fake / "bin" / "python").symlink_to(shutil.which("sh"))
    result = _make_dry_run(makefile_copy)
    assert "not /usr/bin/python3: rebuilding it" in result.stderr
    assert not fake.exists()
