"""The Makefile's installs, read from `make -n` (what make would run) against a venv
path of the test's own: `make run` installs the package without the test extra, `make
test` the test extra, and neither installs again while pyproject.toml is unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_cli import REPO_ROOT


def planned(target: str, venv: Path, *extra: str) -> list[str]:
    # Run from `make test`, make's own variables would say it is a sub-make: drop them.
    env = {name: value for name, value in os.environ.items() if name not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={venv}", *extra], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return tmp_path / ".venv"


def test_make_run_on_a_fresh_clone_installs_no_test_package(venv: Path) -> None:
    steps = planned("run", venv)
    installs = [step for step in steps if " install " in step]
    assert installs == [f"{venv}/bin/pip install -q -e '.'"]
    assert steps[0] == f"python3 -m venv {venv}" and steps[-1] == f"{venv}/bin/tgjobs up"
    assert [s for s in planned("run", venv, "EXTRAS=otel") if " install " in s] == [
        f"{venv}/bin/pip install -q -e '.[otel]'"]


def test_make_test_installs_the_test_extra(venv: Path) -> None:
    installs = [step for step in planned("test", venv) if " install " in step]
    assert installs == [f"{venv}/bin/pip install -q -e '.[test]'"]


def test_nothing_is_installed_again_while_pyproject_is_unchanged(venv: Path) -> None:
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch(mode=0o755)
    later = (REPO_ROOT / "pyproject.toml").stat().st_mtime + 60
    for stamp in (".installed-run", ".installed-test"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    assert planned("run", venv) == [f"{venv}/bin/tgjobs up"]
    single, cluster = planned("test", venv)
    assert single == f"{venv}/bin/pytest -q " and cluster.startswith(f"TEST_REDIS=cluster {venv}/bin/pytest -q ")
    os.utime(venv / ".installed-run", (later - 120, later - 120))  # pyproject.toml changed since
    assert [s for s in planned("run", venv) if " install " in s] == [f"{venv}/bin/pip install -q -e '.'"]
