"""Where mail goes: an SMTP server (SMTP_URL), or `.eml` files under DATA_DIR/outbox/.

Both take a finished `EmailMessage`; the outbox sender (`outbox.sender`) calls them
and retries whatever they raise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 30.0


class Transport(Protocol):
    async def send(self, message: EmailMessage, *, link: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class SmtpTransport:
    """`smtp://[user:pass@]host[:port]` (STARTTLS whenever the server offers it) or
    `smtps://…` (TLS from the first byte)."""

    hostname: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None
    timeout: float = SMTP_TIMEOUT_SECONDS

    @classmethod
    def from_url(cls, url: str) -> SmtpTransport:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must be smtp://[user:pass@]host:port or smtps://…")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit_tls else 587),
            implicit_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    async def send(self, message: EmailMessage, *, link: str | None) -> None:
        import aiosmtplib  # only where mail goes out over SMTP: not loaded in every worker

        await aiosmtplib.send(
            message,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.implicit_tls,
            # None: STARTTLS when the server offers it (aiosmtplib's own choice).
            start_tls=False if self.implicit_tls else None,
            timeout=self.timeout,
        )


@dataclass(frozen=True, slots=True)
class FileTransport:
    """No SMTP_URL (`make run`): each message becomes `<folder>/<time>-<id>.eml`, and its
    link is logged, so a developer can follow it without a mail server."""

    folder: Path

    async def send(self, message: EmailMessage, *, link: str | None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # The values as stored: `message[name]` parses a header again on every read.
        headers = dict(message.raw_items())
        name = str(headers["Message-ID"]).strip("<>").split("@")[0]
        path = self.folder / f"{name}.eml"
        temporary = path.with_suffix(".eml.part")
        temporary.write_bytes(bytes(message))
        os.replace(temporary, path)  # whole or not at all
        log.info("mail to %s written to %s; its link: %s", headers["To"], path, link)
