"""What `users-api serve` runs in each uvicorn process: logging first, then the app, and
a process tuned for serving.

The tests build many apps in one process and tune nothing; a serving worker builds one
and keeps it for its whole life, which is what the tuning below assumes. Each worker
(and the reloader's child) is a fresh interpreter: it sets up logging again, the same
way as the command that started it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys

from fastapi import FastAPI

from users_api.app import create_app
from users_api.config import Settings
from users_api.logs import configure_logging

# Set by `serve` when it supervises workers (or the reloader's child): its process id.
SUPERVISOR_PID = "USERS_API_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory`: settings come from the environment."""
    _end_with_supervisor()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings, on_started=settle_process)


def settle_process() -> None:
    """Set the process up for serving once everything long-lived has been built.

    What start-up built (modules, the OpenAPI models, compiled SQL) lives as long as the
    process: frozen, the cyclic collector stops walking it again and again, and its full
    collections no longer stall requests for tens of milliseconds (p99). A request leaves
    hundreds of container objects, nearly all freed by reference counting: collecting the
    young generation every 700 allocations (the default) ran several times per request
    for little; every 20,000 is still well bounded.

    Then glibc is asked to hand back the heap pages that start-up's garbage freed
    (import-time objects, the source of the common-password list): ~3 MiB of a worker's
    RSS, measured. Elsewhere than glibc there is no `malloc_trim` and nothing to do.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _end_with_supervisor() -> None:
    """A worker gets SIGTERM (a graceful stop) when the `serve` that started it dies: killed
    with SIGKILL, it left its workers serving and holding the port, and the next `serve`
    could not start. Linux only (`prctl`); a worker whose supervisor is already gone stops
    at once. Not for a lone server, whose parent is a shell."""
    supervisor = os.environ.get(SUPERVISOR_PID)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != supervisor:  # it died before we asked
        raise SystemExit(0)
