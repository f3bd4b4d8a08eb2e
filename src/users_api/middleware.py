"""Pure ASGI middleware: cheap enough to sit in front of every request."""

from __future__ import annotations

from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.errors import problem


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"The request body is over {limit} bytes."
        )


class BodySizeLimit:
    """Refuse bodies over `limit` bytes with 413 before anything parses them.

    A declared `Content-Length` over the limit is answered at once; a chunked body is
    counted as it streams in and cut off at the limit (the handler then sees a 413). A
    request whose length is known in advance (declared, or none at all: RFC 9112 §6.3)
    passes straight through, so reads pay nothing for the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send)
            return
        if declared is not None or not _may_stream_a_body(scope):
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            detail=f"The request body is over {self.limit} bytes.",
            code="too-large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _may_stream_a_body(scope: Scope) -> bool:
    """Whether a body of unannounced length may follow: HTTP/1.x only when chunked."""
    if scope.get("http_version", "1.1") not in ("1.0", "1.1"):
        return True  # HTTP/2 and 3 frame bodies without announcing their length
    return any(name == b"transfer-encoding" for name, _ in scope["headers"])
