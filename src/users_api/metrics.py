"""Prometheus metrics: every series of the contract ("Operations") defined here, once.

Other modules count through the objects below (`LOGINS`, `WEBHOOK_DELIVERIES`,
`EVENTS_WRITTEN`, ...); `/metrics` renders them. With `users-api serve --workers N`
each worker writes its values to files in `PROMETHEUS_MULTIPROC_DIR` (a directory of
the run, made by `serve`: `prepare_multiprocess`) and a scrape of any worker reads
them all, so one scrape shows every worker. prometheus-client decides between the two
modes when it is first imported, so the variable is set before any worker starts.

Per request (`middleware.Edge`) a request costs a dictionary lookup and two additions to
plain lists (`RequestMetrics`), added to the series every second and at each scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from bisect import bisect_left
from collections.abc import Iterator
from hmac import compare_digest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from sqlalchemy import func, select
from starlette.types import Scope

from users_api.db.statements import compile_statement
from users_api.outbox.models import OutboxMessage
from users_api.request_log import route_template

if TYPE_CHECKING:
    from users_api.db.database import Database, Unit

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` twin of every series: the scrape stays half as long

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
SAMPLE_SECONDS = 1.0

# Requests: by route template (never a raw id), method and status.
REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ("method", "route", "status"))
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BOUNDS = (*_REQUEST_BUCKETS, float("inf"))  # as the histogram keeps them
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer.",
    ("method", "route", "status"),
    buckets=_REQUEST_BUCKETS,
)
# The database pool of each worker, summed over the live workers.
DB_POOL = Gauge(
    "users_api_db_pool_connections",
    "Pooled database connections: in_use, idle, and requests waiting for one (waiting).",
    ("state",),
    multiprocess_mode="livesum",
)
STATEMENT_FAULTS = Counter(
    "users_api_db_statement_faults_total",
    "Database faults met by statements, by the problem code they became.",
    ("code",),
)
HASH_QUEUE = Gauge(
    "users_api_password_hash_queue",
    "Password hashes waiting for a hashing turn or thread.",
    multiprocess_mode="livesum",
)
HASH_SECONDS = Histogram(
    "users_api_password_hash_seconds",
    "Time one argon2id hash or verification takes on its thread.",
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
LOGINS = Counter(
    "users_api_logins_total",
    "Sign-in attempts (password grant and second step), by outcome: `success` or the "
    "problem code of the refusal.",
    ("outcome",),
)
OUTBOX_BACKLOG = Gauge(
    "users_api_outbox_backlog",
    "Outbox messages not yet delivered (read at scrape time).",
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_AGE = Gauge(
    "users_api_outbox_oldest_age_seconds",
    "Age of the oldest undelivered outbox message; 0 when none (read at scrape time).",
    multiprocess_mode="mostrecent",
)
WEBHOOK_DELIVERIES = Counter(
    "users_api_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome: delivered, failed, disabled or rejected.",
    ("outcome",),
)
EVENTS_WRITTEN = Counter(
    "users_api_events_written_total", "Audit events written, by type.", ("type",)
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of a path no route answers (404, 405)

_OUTBOX_STATE = compile_statement(
    select(
        func.count(),
        func.extract("epoch", func.now() - func.min(OutboxMessage.created_at)),
    ).where(OutboxMessage.delivered_at.is_(None))
)


class RequestMetrics:
    """The request series, counted per request in plain lists and added to the
    Prometheus children by `flush`: every second (`sample_forever`) and at each scrape.

    Per request that is a dictionary lookup, a bisection and two additions: no lock, no
    write to a worker's metric file (with several workers every increment is one), no
    loop over the buckets; the children are made once per route, method and status.
    """

    __slots__ = ("_by_key", "_by_labels")

    def __init__(self) -> None:
        # By the route's id: FastAPI's routes compare by value and cannot be dict keys.
        # A route lives as long as its app, so its id names it for the app's life.
        self._by_key: dict[tuple[int, str, int], _Pending] = {}
        self._by_labels: dict[tuple[str, str, str], _Pending] = {}

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        method = scope["method"]
        pending = self._by_key.get((id(route), method, status))
        if pending is None:
            pending = self._make(route, method, status)
        pending.counts[bisect_left(_BOUNDS, seconds)] += 1
        pending.total += seconds

    def _make(self, route: Any, method: str, status: int) -> _Pending:
        template = route_template(route) or UNMATCHED
        # A client chooses the method of a path nothing answers: keep the label set small.
        label = method if method in _METHODS else "other"
        labels = (label, template, str(int(status)))
        pending = self._by_labels.get(labels)
        if pending is None:
            pending = self._by_labels[labels] = _Pending(
                REQUESTS.labels(*labels), REQUEST_SECONDS.labels(*labels)
            )
        if route is not None or label == method:  # a bounded key: remember it
            self._by_key[(id(route), method, status)] = pending
        return pending

    def flush(self) -> None:
        for pending in self._by_labels.values():
            pending.flush()


class _Pending:
    """One child's observations since the last flush."""

    __slots__ = ("count", "counts", "histogram", "total")

    def __init__(self, count: Any, histogram: Any) -> None:
        self.count = count
        self.histogram = histogram
        self.counts = [0] * len(_BOUNDS)
        self.total = 0.0

    def flush(self) -> None:
        observed = sum(self.counts)
        if not observed:
            return
        self.count.inc(observed)
        # What `Histogram.observe` does one observation at a time (its `_sum` and its
        # per-bucket `_buckets`, cumulated when collected), for all of them at once.
        self.histogram._sum.inc(self.total)
        for index, counted in enumerate(self.counts):
            if counted:
                self.histogram._buckets[index].inc(counted)
        self.counts = [0] * len(_BOUNDS)
        self.total = 0.0


def count_login(outcome: str) -> None:
    LOGINS.labels(outcome).inc()


def count_webhook_delivery(outcome: str) -> None:
    """One webhook attempt, once it is recorded (`webhooks.delivery.Outcome.label`)."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def count_event(event_type: str, written: int = 1) -> None:
    """Audit events written (count once the transaction that wrote them committed)."""
    EVENTS_WRITTEN.labels(event_type).inc(written)


def sample_pool(db: Database) -> None:
    """The pool's numbers now, for this worker."""
    in_use, idle, waiting = db.pool_state()
    DB_POOL.labels("in_use").set(in_use)
    DB_POOL.labels("idle").set(idle)
    DB_POOL.labels("waiting").set(waiting)


async def sample_forever(db: Database, requests: RequestMetrics) -> None:
    """Every second: a scrape reaches one worker, and must still show every worker's
    pool and requests."""
    while True:
        sample_pool(db)
        requests.flush()
        await asyncio.sleep(SAMPLE_SECONDS)


OUTBOX_READ_SECONDS = 1.0


async def _outbox_state(unit: Unit) -> tuple[int, float]:
    row = await unit.one(_OUTBOX_STATE)
    assert row is not None  # an aggregate: one row always
    return int(row[0]), float(row[1] or 0.0)


async def render(db: Database | None, requests: RequestMetrics) -> bytes:
    """The text of a scrape: the scraping worker reads the outbox and its own pool first."""
    requests.flush()
    if db is not None:
        sample_pool(db)
        with contextlib.suppress(Exception):  # no database now: the last values stand
            # Within a second, as /readyz: a scrape that waited for a frozen database
            # (10-11 s) outlasted Prometheus' 10 s and lost the incident's metrics.
            async with asyncio.timeout(OUTBOX_READ_SECONDS):
                backlog, age = await db.run(_outbox_state, transaction=False)
            OUTBOX_BACKLOG.set(backlog)
            OUTBOX_OLDEST_AGE.set(age)
    if folder := os.environ.get(MULTIPROC_ENV):
        forget_dead_workers(Path(folder))
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def authorized(header: str | None, token: str | None) -> bool:
    """METRICS_TOKEN, when set, must come as `Authorization: Bearer <token>`."""
    if token is None:
        return True
    scheme, _, presented = (header or "").partition(" ")
    return scheme.lower() == "bearer" and compare_digest(presented.strip(), token)


def forget_dead_workers(folder: Path) -> None:
    """The live gauges of workers that died without a shutdown (killed, crashed; the
    server starts another) leave the sums: they kept adding their last values."""
    for path in folder.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(folder))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def worker_stopped() -> None:
    """At a worker's shutdown: its live gauges leave the sums."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def multiprocess_directory(workers: int) -> Iterator[None]:
    """For `serve --workers N` (N > 1): a fresh directory of this run for the workers'
    metric files, in `PROMETHEUS_MULTIPROC_DIR` for the workers to find, removed at the
    end. An operator's own `PROMETHEUS_MULTIPROC_DIR` is used instead, emptied first: a
    previous run's files would add its counts to this one's."""
    if workers <= 1:
        yield
        return
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix="users-api-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)
