"""Running `users-api` and helpers as real subprocesses, in a controlled environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from users_api.config import Settings

USERS_API = Path(sys.executable).parent / "users-api"
TIMEOUT = 120.0

# Our own settings, and libpq's variables (PGHOST, PGOPTIONS, ...) that psql would obey.
_SETTINGS = {name.upper() for name in Settings.model_fields}


def clean_environment(home: Path, **overrides: str) -> dict[str, str]:
    """This process's environment without any setting of ours or of libpq, `HOME` in
    `home` (no developer's ~/.psqlrc), plus `overrides`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in _SETTINGS and not name.startswith("PG") and "DATABASE" not in name
    }
    (home / "home").mkdir(exist_ok=True)
    env["HOME"] = str(home / "home")
    env.update(overrides)
    return env


def run_cli(
    *args: str, cwd: Path, env: dict[str, str], module: bool = False, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "users_api"] if module else [str(USERS_API)]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
