"""A real HTTP receiver of webhooks, on a port of its own, in threads: it verifies each
request's signature with the `standardwebhooks` library and answers as it is told."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    verified: bool  # the signature verified with the endpoint's secret

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """Answers 200, or the statuses queued in `plan` one per request; sleeps `delay`
    seconds first. `stop` closes the port (connections are refused); `start` opens it
    again, on the same port."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.plan: list[int] = []
        self.delay = 0.0
        self.received: list[Received] = []
        self.arrived = 0  # requests read, answered or not yet
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver.arrived += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    status = receiver.plan.pop(0) if receiver.plan else 200
                    receiver.received.append(
                        Received(self.path, headers, body, status, receiver.verify(body, headers))
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        if self.secret is None:
            return False
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    def delivered(self) -> list[Received]:
        """The requests it answered with a 2xx, in the order they came."""
        with self._lock:
            return [item for item in self.received if 200 <= item.status < 300]

    def all(self) -> list[Received]:
        with self._lock:
            return list(self.received)
