"""Operations of a real `users-api serve`: its whole log, two workers' metrics, traces."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pyotp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.engine import make_url

from tests.mail.helpers import _LINK, text_of
from tests.mail.smtp import SmtpServer
from tests.operations.test_metrics import value
from tests.resilience.serve import serve

SECRET_KEY = "operations-secret-key-that-is-at-least-32-bytes"
DATABASE_PASSWORD = "database-password-never-logged"
PASSWORD = "a first fine passphrase for ops"
NEW_PASSWORD = "a second fine passphrase for ops"
USERS = "/api/v1/users"
GRACE_SECONDS = 15


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_whole_flow_logs_each_request_once_and_no_secret(
    tmp_path: Path, fresh_database_url: str
) -> None:
    url = make_url(fresh_database_url).set(password=DATABASE_PASSWORD)
    secrets: list[str] = [SECRET_KEY, DATABASE_PASSWORD, PASSWORD, NEW_PASSWORD]
    smtp = SmtpServer()
    smtp.start()
    with serve(
        tmp_path,
        DATABASE_URL=url.render_as_string(hide_password=False),
        SECRET_KEY=SECRET_KEY,
        METRICS_TOKEN="metrics-token-never-logged",
        OUTBOX_POLL_SECONDS="0.2",
        SMTP_URL=smtp.url,
    ) as served:
        secrets.append("metrics-token-never-logged")
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
            created = await client.post(
                USERS,
                json={"email": "ada@example.com", "username": "ada", "password": PASSWORD},
                headers={"X-Request-ID": "sign-up.1"},
            )
            assert created.status_code == 201, created.text
            user_id = created.json()["id"]
            login = await client.post(
                "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            tokens = login.json()
            secrets += [tokens["access_token"], tokens["refresh_token"]]
            me = await client.get(f"{USERS}/{user_id}", headers=_bearer(tokens["access_token"]))
            assert me.status_code == 200
            changed = await client.patch(
                f"{USERS}/{user_id}",
                json={"password": NEW_PASSWORD, "current_password": PASSWORD},
                headers=_bearer(tokens["access_token"]),
            )
            assert changed.status_code == 200, changed.text
            login = await client.post(
                "/api/v1/auth/token", data={"username": "ada", "password": NEW_PASSWORD}
            )
            assert login.status_code == 200, login.text
            tokens = login.json()
            refreshed = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
            )
            assert refreshed.status_code == 200, refreshed.text
            secrets += [tokens["access_token"], tokens["refresh_token"]]
            secrets += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
            access = refreshed.json()["access_token"]
            reset = await client.post(
                "/api/v1/auth/password-reset", json={"email": "ada@example.com"}
            )
            assert reset.status_code == 202, reset.text
            enrol = await client.post(
                "/api/v1/auth/mfa/totp",
                json={"current_password": NEW_PASSWORD},
                headers=_bearer(access),
            )
            assert enrol.status_code == 200, enrol.text
            totp_secret = enrol.json()["secret"]
            secrets.append(totp_secret)
            confirm = await client.post(
                "/api/v1/auth/mfa/totp/confirm",
                json={"code": pyotp.TOTP(totp_secret).now()},
                headers=_bearer(access),
            )
            assert confirm.status_code == 200, confirm.text
            secrets += confirm.json()["recovery_codes"]
            wrong = await client.post(
                "/api/v1/auth/token", data={"username": "ada", "password": "a wrong guess 123"}
            )
            assert wrong.status_code == 401
            secrets.append("a wrong guess 123")
            metrics = await client.get("/metrics", headers=_bearer("metrics-token-never-logged"))
            assert metrics.status_code == 200
            # The mails' links carry tokens: the verification's and the reset's.
            mailed = await smtp.wait_for(2)
        served.terminate()
        assert served.wait(within=GRACE_SECONDS) == 0, served.output

    secrets += [hashlib.sha256(token.encode()).hexdigest() for token in secrets]
    smtp.stop()
    raw = "\n".join(served.lines)
    for secret in secrets:
        assert secret not in raw, secret[:6]
    assert "$argon2" not in raw  # no password hash
    links = [link for message in mailed for link in _LINK.finditer(text_of(message))]
    assert len(links) == 2
    for link in links:  # a mail's link holds a token
        assert link[3] not in raw

    requests = [event for event in served.events if event.get("logger") == "users_api.requests"]
    assert all(event["level"] == "info" for event in requests), requests
    assert all(
        event["route"] is None or "{" in event["route"] or event["route"] == event["path"]
        for event in requests
    )
    read = [
        event
        for event in requests
        if event["method"] == "GET" and event["path"] == f"{USERS}/{user_id}"
    ]
    assert len(read) == 1  # once per request
    (line,) = read
    assert line["route"] == "/api/v1/users/{user_id}"
    assert line["status"] == 200
    assert line["user_id"] == user_id
    assert len(line["request_id"]) == 32
    assert isinstance(line["duration_ms"], float)
    assert {event["request_id"] for event in requests if event["method"] == "POST"} >= {"sign-up.1"}
    mail_lines = [event for event in served.events if "mail" in str(event.get("event"))]
    assert mail_lines, served.output


async def test_two_workers_one_scrape_shows_both(tmp_path: Path, fresh_database_url: str) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"a previous run's file")
    with serve(
        tmp_path,
        "--workers",
        "2",
        DATABASE_URL=fresh_database_url,
        SECRET_KEY=SECRET_KEY,
        DB_POOL_SIZE="3",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    ) as served:
        assert not (metrics_dir / "counter_999999.db").exists()  # emptied at start
        sent = 0
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
            await client.get("/readyz")  # both workers answer /readyz before the loop

            async def one() -> None:
                # A new connection each: the workers take turns accepting them.
                async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as own:
                    assert (await own.get("/healthz")).status_code == 200

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await asyncio.gather(*(one() for _ in range(20)))
                sent += 20
                if len(_pids_that_served(metrics_dir)) == 2:
                    break
                await asyncio.sleep(1.2)  # each worker adds its counts every second
            assert len(_pids_that_served(metrics_dir)) == 2, "both workers served"
            await asyncio.sleep(1.5)
            # A worker killed with SIGKILL leaves its live gauges behind: they must not
            # be added to the live workers' (its last pool and hash queue stayed summed).
            killed = next(metrics_dir.glob("gauge_livesum_*.db"))
            shutil.copy(killed, metrics_dir / "gauge_livesum_999999.db")
            text = (await client.get("/metrics")).text
            assert not (metrics_dir / "gauge_livesum_999999.db").exists()
            # Each worker samples its pool every second: wait for both to have done so
            # with every connection back (once in CI a sample read 5 of 6).
            for _ in range(10):
                if _pooled(text) == 6:
                    break
                await asyncio.sleep(0.5)
                text = (await client.get("/metrics")).text
        served.terminate()
        assert served.wait(within=GRACE_SECONDS) == 0, served.output
    assert value(text, "http_requests_total", route="/healthz", status="200") == sent
    assert value(text, "http_request_duration_seconds_count", route="/healthz") == sent
    # Each worker's pool of 3, summed over both.
    assert _pooled(text) == 6


def _pooled(text: str) -> float:
    return value(text, "users_api_db_pool_connections", state="idle") + value(
        text, "users_api_db_pool_connections", state="in_use"
    )


def _pids_that_served(folder: Path) -> set[str]:
    """The workers whose own file counts a /healthz request."""
    pids = set()
    for path in folder.glob("counter_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):  # type: ignore[no-untyped-call]
            for sample in family.samples:
                if (
                    sample.name == "http_requests_total"
                    and sample.labels.get("route") == "/healthz"
                ):
                    pids.add(path.stem.removeprefix("counter_"))
    return pids


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A tiny OTLP/HTTP collector: every POST to /v1/traces decoded and kept."""
    received: list[ExportTraceServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


async def test_traces_of_a_request_and_its_sql_reach_the_collector(
    tmp_path: Path, fresh_database_url: str
) -> None:
    with (
        otlp_receiver() as (endpoint, received),
        serve(
            tmp_path,
            DATABASE_URL=fresh_database_url,
            SECRET_KEY=SECRET_KEY,
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        ) as served,
    ):
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
            created = await client.post(
                USERS, json={"email": "ada@example.com", "username": "ada", "password": PASSWORD}
            )
            assert created.status_code == 201, created.text
        served.terminate()  # the batch still held is sent on the way out
        assert served.wait(within=GRACE_SECONDS) == 0, served.output
    spans = [
        span
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = [span.name for span in spans]
    assert "POST /api/v1/users" in names, sorted(set(names))
    (request_span,) = [span for span in spans if span.name == "POST /api/v1/users"]
    sql = [
        span
        for span in spans
        if span.trace_id == request_span.trace_id and span is not request_span
    ]
    assert sql, names
    assert any(
        attribute.key == "db.statement" or attribute.key == "db.query.text"
        for span in sql
        for attribute in span.attributes
    ), sql
    assert all(span.parent_span_id for span in sql)
