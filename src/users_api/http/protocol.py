"""uvicorn's HTTP/1.1 protocol (httptools), with the refusals it makes in the service's form.

- A request its parser cannot read (a bad request line or method, a control character
  in a header, a bad `Content-Length` or chunk) is a 400 problem+json with a request id,
  as every other error is, instead of uvicorn's plain text.
- Request headers are bounded: past `MAX_HEADER_BYTES` the answer is 431 and the
  connection is closed. httptools keeps a header in memory until its last byte has
  come, and uvicorn sets no bound of its own: four concurrent 150 MB headers took a
  worker from 124 to 564 MiB (seen from outside), and were answered 200.
- A request's line and headers must arrive within `HEADER_TIMEOUT_SECONDS` of its first
  byte (or of the connection, for its first request): else 408 and the connection is
  closed. uvicorn times out idle keep-alive connections only, so 400 connections that
  sent half a request were held open for as long as their clients liked.

The bound is kept twice over, by one rule. While a request's headers are still coming,
the reads that began and ended inside them are counted (the read that starts a request
is not: it may hold the end of a pipelined predecessor), which bounds the memory a
header in flight can take. When the headers are complete, the request line and fields
the parser handed over are measured: a request whose headers came in one read (up to
256 KiB) is held to the same bound.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from users_api.errors import PROBLEM_MEDIA_TYPE, problem_body
from users_api.http.request_id import new_request_id

# The bound on a request's line and header fields together: nginx's default buffers
# for large headers are 4 x 8 KiB, Node's limit 16 KiB; what a browser or an identity
# provider sends fits many times over.
MAX_HEADER_BYTES = 64 * 1024
# nginx's client_header_timeout is 60 s; a client on any network sends a request's
# headers within a few round trips.
HEADER_TIMEOUT_SECONDS = 30.0


class _HeadersTooLarge(Exception):
    """Stops the parser at a request whose line and fields are past the bound."""


class ServiceHttpProtocol(HttpToolsProtocol):
    """`uvicorn.run(http=ServiceHttpProtocol)`; `serve` passes it."""

    header_timeout: float = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # When the headers being waited for began (the connection's opening for its
        # first request); None while none are: a request is being read or answered, or
        # the connection is idle between requests (uvicorn's keep-alive timeout's turn).
        self._headers_since: float | None = None
        self._began = False
        self._header_bytes = 0
        self._too_large = False
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_since = self.loop.time()
        self._watch = self.loop.call_later(self.header_timeout, self._watch_headers)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        counting = self._headers_since is not None
        self._began = False
        super().data_received(data)
        if not counting or self._began or self._headers_since is None:
            return
        if self.transport.is_closing():
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse_too_large()

    def on_message_begin(self) -> None:
        self._began = True
        self._header_bytes = 0
        self._headers_since = self.loop.time()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._headers_since = None
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value)
        if size > MAX_HEADER_BYTES:
            # Raised inside the parser's callback: it stops there, and uvicorn hands the
            # refusal to `send_400_response`, which answers this one with the 431.
            self._too_large = True
            raise _HeadersTooLarge
        super().on_headers_complete()

    def _watch_headers(self) -> None:
        """One timer per connection, not one armed and cancelled per request (that
        measured 0.127 ms of server CPU a read against 0.122 before, this 0.124 against
        0.121, in `make bench`): it looks again when the headers waited for would be late."""
        self._watch = None
        if self.transport.is_closing():
            return
        since, now = self._headers_since, self.loop.time()
        if since is not None and now - since >= self.header_timeout:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"The request line and headers did not arrive within {self.header_timeout:g} s.",
            )
            return
        delay = self.header_timeout if since is None else since + self.header_timeout - now
        self._watch = self.loop.call_later(delay, self._watch_headers)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what its parser refuses, as a problem."""
        if self._too_large:
            self._refuse_too_large()
            return
        self._refuse(HTTPStatus.BAD_REQUEST, "The request is not valid HTTP/1.1.")

    def _refuse_too_large(self) -> None:
        self._refuse(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"The request line and header fields take more than {MAX_HEADER_BYTES} bytes.",
        )

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        """Answer before there is a request (no app, no middleware), and close."""
        request_id = new_request_id()
        body = problem_body(status, detail=detail, code=None, request_id=request_id.decode())
        head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head += [
            b"content-type: " + PROBLEM_MEDIA_TYPE.encode() + b"\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"x-request-id: " + request_id + b"\r\n",
            b"x-content-type-options: nosniff\r\n",
            b"cache-control: no-store\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
