"""The Makefile's installs: `make run` takes only what serving needs, `make test` the rest.

Real `make` on a copy of the Makefile, with stand-ins for uv and the installed commands
that only write down how they were called (a real sync would copy ~100 packages).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "{log}"\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy2(ROOT / name, tmp_path / name)
    log = tmp_path / "calls.log"
    for tool in (".tools/bin/uv", ".venv/bin/users-api", ".venv/bin/pytest"):
        path = tmp_path / tool
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_RECORDER.format(log=log))
        path.chmod(0o755)
    return tmp_path


def _make(project: Path, target: str) -> list[str]:
    """Run `make target`; the commands the stand-ins were called with, in order."""
    log = project / "calls.log"
    log.unlink(missing_ok=True)
    # Nothing of an outer make (CI runs the suite under `make test PYTEST_ARGS=...`).
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MAKE")
        and key not in {"MFLAGS", "PYTEST_ARGS", "BENCH_ARGS", "TEST_WORKERS", "PYTHON", "VENV"}
    }
    subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=project,
        env=environment,
        check=True,
        capture_output=True,
    )
    return [line.strip() for line in log.read_text().splitlines()] if log.exists() else []


def test_run_installs_without_the_dev_group_and_test_still_gets_it(project: Path) -> None:
    run = _make(project, "run")
    assert run[0].startswith("uv sync --frozen --no-dev --inexact"), run
    assert run[1].startswith("users-api serve"), run

    # `make run` came first: `make test` must not take its stamp for a full install.
    test = _make(project, "test")
    assert test[0].startswith("uv sync --frozen"), test
    assert "--no-dev" not in test[0]
    assert test[1].startswith("pytest"), test

    # Each set is installed once; running either again installs nothing.
    workers = 2 * os.sysconf("SC_NPROCESSORS_ONLN")
    assert _make(project, "test") == [f"pytest -n {workers} --dist worksteal"]
    assert _make(project, "run")[0].startswith("users-api serve")

    # A new lock file reinstalls both.
    os.utime(project / "uv.lock")
    assert "--no-dev" in _make(project, "run")[0]
    assert _make(project, "test")[0].startswith("uv sync --frozen --python")
