"""`users-api serve` over real HTTP: what uvicorn adds or passes on, behind a proxy."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ADMIN_PASSWORD, Admin
from tests.resilience.serve import Served, serve

SECRET_KEY = "serving-test-secret-key-at-least-32-bytes"
PASSWORD = "a perfectly fine password"
INJECTED = b'limit=1&x=>;rel="preload";as="script",<https://evil.example/x.js'


@pytest.fixture(scope="module")
def served(
    database_url: str, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The service behind a proxy at 127.0.0.1 (the tests' own address), on the tests'
    database (its rows are emptied after each test, as for the in-process app)."""
    with serve(
        tmp_path_factory.mktemp("serve"),
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        TRUSTED_PROXIES="127.0.0.1",
        LOGIN_FAILURES_PER_ADDRESS="2",
    ) as server:
        yield server


def _raw_get(served: Served, target: bytes, *headers: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    """One request sent byte for byte (httpx would percent-encode the target)."""
    host, port = served.base_url.removeprefix("http://").split(":")
    request = b"\r\n".join(
        [b"GET " + target + b" HTTP/1.1", b"Host: evil.example", *headers, b"Connection: close"]
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request + b"\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    fields = [line.partition(b":") for line in head[1:]]
    return head[0], {name.lower(): value.strip() for name, _, value in fields}


def test_served_answers_name_no_server_and_carry_the_standard_headers(served: Served) -> None:
    for response in (
        httpx.get(f"{served.base_url}/healthz"),
        httpx.get(f"{served.base_url}/nothing", headers={"X-Request-ID": "trace-1"}),
    ):
        assert "server" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]
    assert response.headers["x-request-id"] == "trace-1"
    assert response.json()["request_id"] == "trace-1"


def test_served_behind_a_proxy_that_adds_its_own_forwarded_for_line(served: Served) -> None:
    """The proxy's line is the second; the first is whatever the client wrote."""
    statuses = []
    with httpx.Client(base_url=served.base_url) as client:
        for forged in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
            response = client.post(
                "/api/v1/auth/token",
                data={"username": "nobody", "password": "wrong password"},
                headers=[("X-Forwarded-For", forged), ("X-Forwarded-For", "198.51.100.7")],
            )
            statuses.append(response.status_code)
    assert statuses == [401, 401, 429]


def test_served_links_name_neither_the_host_nor_the_raw_query(served: Served, admin: Admin) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        body = {"email": "ada@example.com", "username": "ada", "password": PASSWORD}
        assert client.post("/api/v1/users", json=body).status_code == 201
        credentials = {"username": admin.username, "password": ADMIN_PASSWORD}
        tokens = client.post("/api/v1/auth/token", data=credentials)
    authorization = b"Authorization: Bearer " + tokens.json()["access_token"].encode()
    status, headers = _raw_get(served, b"/api/v1/users?" + INJECTED, authorization)
    assert status.startswith(b"HTTP/1.1 200"), status
    link = headers[b"link"]
    assert link.startswith(b"</api/v1/users?limit=1&cursor="), link
    assert link.count(b"<") == 1
    assert b"evil" not in link
    assert b"preload" not in link
    status, headers = _raw_get(served, b"/api/v1/users/", authorization)
    assert status.startswith(b"HTTP/1.1 404"), status
    assert b"location" not in headers


def _exchange(served: Served, *parts: bytes) -> bytes:
    """Send `parts` one write each (as far as the server lets), read until it closes."""
    host, port = served.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        with contextlib.suppress(ConnectionError):  # it may close before we are done
            for part in parts:
                connection.sendall(part)
        answer = b""
        with contextlib.suppress(ConnectionError):
            while chunk := connection.recv(65536):
                answer += chunk
    return answer


def _problem(answer: bytes) -> tuple[bytes, dict[bytes, bytes], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = [line.partition(b":") for line in lines[1:]]
    return lines[0], {n.lower(): v.strip() for n, _, v in fields}, json.loads(body)


def test_headers_past_the_bound_are_refused_with_a_431_problem(served: Served) -> None:
    """Seen from outside: a 150 MB header was read whole and answered 200 (four at once
    took the worker to 564 MiB). Past 64 KiB of request line and headers: 431, closed."""
    start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    answer = _exchange(served, start, *[b"a" * 16384] * 64, b"\r\n\r\n")
    status, headers, body = _problem(answer)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"connection"] == b"close"
    assert body["status"] == 431
    assert body["code"] == "headers-too-large"
    assert body["request_id"] == headers[b"x-request-id"].decode()

    # Under the bound, in many small writes: answered.
    fine = _exchange(served, start, *[b"a" * 4096] * 10, b"\r\nConnection: close\r\n\r\n")
    assert fine.startswith(b"HTTP/1.1 200"), fine[:100]


def test_a_request_pipelined_after_a_big_body_is_not_taken_for_big_headers(
    served: Served,
) -> None:
    body = b'{"email": "' + b"x" * 60_000 + b'"}'
    first = (
        b"POST /api/v1/auth/password-reset HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    second = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = _exchange(served, first + second + b"", b"")
    assert answer.count(b"HTTP/1.1 ") == 2, answer[:300]
    assert b" 431 " not in answer
    assert answer.rpartition(b"HTTP/1.1 ")[2].startswith(b"200"), answer[-300:]


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello to a plain port
    ],
)
def test_what_the_http_parser_refuses_is_a_400_problem(
    served: Served, request_bytes: bytes
) -> None:
    status, headers, body = _problem(_exchange(served, request_bytes))
    assert status == b"HTTP/1.1 400 Bad Request"
    assert headers[b"content-type"] == b"application/problem+json"
    assert body["code"] == "bad-request"
    assert body["request_id"] == headers[b"x-request-id"].decode()
