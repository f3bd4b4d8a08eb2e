"""What a serving worker loads: each module kept out here is memory every worker saves
(issue 13's RSS line). A fresh interpreter, as uvicorn's worker is."""

from __future__ import annotations

import os
import subprocess
import sys

# Loaded only by what needs them: the SCIM app at its first request (scim/mount.py),
# SMTP when mail goes out over it, httpx at the first webhook attempt, and nothing of
# the optional extras that structlog, httpx and PyJWT would otherwise import (lean.py).
KEPT_OUT = (
    "scim2_models",
    "lark",
    "aiosmtplib",
    "httpx",
    "rich",
    "pygments",
    "greenlet",
    "cryptography",
    "sqlalchemy.ext.asyncio",
)


def test_a_worker_loads_none_of_what_it_may_never_use() -> None:
    script = (
        "import sys, users_api.serving; "
        f"print(' '.join(m for m in {KEPT_OUT!r} if m in sys.modules))"
    )
    # Without coverage's hooks (`make test` measures subprocesses too, and its greenlet
    # support imports greenlet): what a worker loads, not what the measuring adds.
    env = {name: value for name, value in os.environ.items() if not name.startswith("COV")}
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert loaded == []
