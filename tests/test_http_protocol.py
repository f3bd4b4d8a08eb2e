"""The service's HTTP/1.1 protocol on a real uvicorn server and socket: a request whose
headers do not come in time is answered 408 and its connection closed. (Its other
refusals are tested through `users-api serve`, in tests/test_serving.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from users_api.http.protocol import ServiceHttpProtocol


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


class _Quick(ServiceHttpProtocol):
    header_timeout = 0.5


@pytest.fixture
async def port() -> AsyncIterator[int]:
    config = uvicorn.Config(
        _hello, host="127.0.0.1", port=0, http=_Quick, lifespan="off", log_config=None
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  # uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await serving


async def _answer_to(port: int, sent: bytes) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(sent)
    answer = await asyncio.wait_for(reader.read(), timeout=10)  # until it closes
    writer.close()
    return answer, time.monotonic() - started


@pytest.mark.parametrize(
    "sent",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: stops here",  # half a request
        b"",  # nothing at all
    ],
)
async def test_headers_that_do_not_come_in_time_are_a_408(port: int, sent: bytes) -> None:
    answer, waited = await _answer_to(port, sent)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout"), answer
    assert b"content-type: application/problem+json" in head
    assert json.loads(body)["code"] == "request-timeout"
    assert 0.4 < waited < 5


async def test_a_keep_alive_connection_times_each_requests_headers(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), timeout=5)  # chunked
    assert first.startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.7)  # past the header timeout, but no request had begun
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the second one stalls
    second = await asyncio.wait_for(reader.read(), timeout=5)
    assert second.startswith(b"HTTP/1.1 408"), second
    writer.close()


@pytest.mark.parametrize(
    "sent",
    [
        # Each in one write: the read that starts a request is not counted as it comes.
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 130_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (n, b"c" * 1000) for n in range(70))
        + b"\r\n",
    ],
    ids=["one-big-field", "long-request-line", "many-fields"],
)
async def test_headers_past_the_bound_in_one_write_are_a_431(port: int, sent: bytes) -> None:
    """Seen from outside: 130 KB of headers sent at once were answered 200, and a 70 KB
    request line 400, where the bound (64 KiB) says 431."""
    answer, _ = await _answer_to(port, sent)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["code"] == "headers-too-large"


async def test_headers_under_the_bound_in_one_write_are_answered(port: int) -> None:
    sent = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
    answer, _ = await _answer_to(port, sent + b"a" * 60_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"hello" in answer
