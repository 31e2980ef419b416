"""The package outside the checkout: the wheel built from the sources, installed in a
fresh venv, runs `tgjobs up` from an unrelated directory (embedded Redis with its data
under $XDG_DATA_HOME/tgjobs, the API, the workers) and runs a job.

Kept quick: the wheel is built once (pip's build isolation fetches setuptools from its
cache), and the venv gets the dependencies by a path line to the test venv's
site-packages instead of downloading them again; the checkout itself is never on its
path (that venv's editable-install hook is not run: a path line's .pth files are not
read), which the test checks.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_cli import REPO_ROOT, clean_env

from cli.embedded_redis import free_port
from cli.redis_binary import RedisServerNotFound, find_redis_server

SOURCES = ("api", "cli", "config", "processors", "sink", "streams", "pyproject.toml", "README.md")
STARTED_WITHIN_S = 60.0


def build_wheel(into: Path) -> Path:
    src = into / "src"
    for name in SOURCES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy
        copy(REPO_ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                              if (REPO_ROOT / name).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(into / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (into / "dist").glob("tgjobs-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    python = path / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=120)
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return path / "bin"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTED_WITHIN_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if get_json(f"{url}/readyz")["status"] == "ready":
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("tgjobs up did not get ready in time")


def test_the_wheel_runs_tgjobs_up_from_any_directory(tmp_path: Path) -> None:
    try:
        find_redis_server()
    except RedisServerNotFound as exc:
        pytest.skip(str(exc))
    bin_dir = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "build"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([bin_dir / "python", "-c", "import streams, api.routes.dashboard as d; "
                            "print(streams.__file__); print(len(d.STATIC_FILES))"],
                           cwd=elsewhere, check=True, capture_output=True, text=True).stdout.split()
    assert where[0].startswith(str(tmp_path / "venv")) and int(where[1]) >= 4  # the wheel's, with its files
    check = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout  # the wheel's declared dependencies are all met

    api_port, redis_port = free_port(), free_port()
    env = {**clean_env(), "XDG_DATA_HOME": str(tmp_path / "xdg"), "EMBEDDED_REDIS_PORT": str(redis_port),
           "API_PORT": str(api_port), "SHUTDOWN_GRACE": "5"}
    proc = subprocess.Popen([bin_dir / "tgjobs", "up", "--queues", "signals"], cwd=elsewhere, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_ready(url, proc)
        body = json.dumps({"type": "signal", "data": {"signalId": "s1", "signalType": "Email Open",
                                                      "companyId": "comp_1", "data": {}}}).encode()
        request = urllib.request.Request(f"{url}/api/jobs", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            job_id = json.load(response)["id"]
        deadline = time.monotonic() + 20
        while get_json(f"{url}/api/jobs/{job_id}")["status"] != "completed":
            assert time.monotonic() < deadline, "the job did not complete"
            time.sleep(0.2)
        assert (tmp_path / "xdg" / "tgjobs" / "redis").is_dir()
        assert not (elsewhere / ".data").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
