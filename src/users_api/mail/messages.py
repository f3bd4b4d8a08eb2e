"""The messages the service mails, built with `email.message.EmailMessage`, and their
way into the outbox (written in the caller's transaction)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlencode

from users_api.config import Settings
from users_api.db.database import Unit
from users_api.mail.transport import FileTransport, SmtpTransport, Transport
from users_api.outbox.sender import enqueue

KIND = "mail"
# A header line longer than this is folded (RFC 5322's 78, `email.policy.default`'s).
_LINE = 78


def _header(message: EmailMessage, name: str, value: str) -> None:
    """Add a header. The policy parses a header when it is set and again when the message
    is written: 0.45 ms of a verification mail's 0.74 ms of CPU, measured, for a text it
    writes back unchanged when it is one short line of printable ASCII. Such a header is
    stored as it is (no CR or LF can pass: no injected header); any other goes through
    the policy, which encodes and folds it."""
    if value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= _LINE:
        message.set_raw(name, value)
    else:
        message[name] = value


@dataclass(frozen=True, slots=True)
class Mailer:
    """Writes mail into the outbox, and (as the outbox's `mail` handler) sends it."""

    transport: Transport
    sender: str  # MAIL_FROM
    public_url: str  # PUBLIC_URL: links point at the client application's pages

    def link(self, page: str, token: str) -> str:
        return f"{self.public_url.rstrip('/')}/{page}?{urlencode({'token': token})}"

    async def enqueue(
        self, unit: Unit, *, to: str, subject: str, text: str, link: str | None = None
    ) -> None:
        """Store the message with the change that causes it. Its Message-ID and Date are
        fixed now, so every attempt sends the same message (a duplicate is recognisable)."""
        domain = self.sender.rpartition("@")[2] or "localhost"
        payload = {
            "to": to,
            "subject": subject,
            "text": text,
            "link": link,
            "message_id": make_msgid(idstring=secrets.token_hex(8), domain=domain),
            # "+0000", as the header is written (not "GMT", RFC 5322's obsolete zone).
            "date": format_datetime(datetime.now(UTC)),
        }
        await enqueue(unit, KIND, payload)

    def build(self, payload: Mapping[str, Any]) -> EmailMessage:
        message = EmailMessage()
        _header(message, "From", self.sender)
        _header(message, "To", payload["to"])
        _header(message, "Subject", payload["subject"])
        _header(message, "Date", payload["date"])
        _header(message, "Message-ID", payload["message_id"])
        # RFC 3834: no vacation replies or other auto-answers to this.
        _header(message, "Auto-Submitted", "auto-generated")
        message.set_content(payload["text"])
        return message

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer:
        transport: Transport
        if settings.smtp_url is None:
            transport = FileTransport(settings.data_dir / "outbox")
        else:
            transport = SmtpTransport.from_url(settings.smtp_url.get_secret_value())
        return cls(transport=transport, sender=settings.mail_from, public_url=settings.public_url)

    async def deliver(self, payload: Mapping[str, Any], attempt: int) -> None:
        """The outbox's handler for `mail` rows (every attempt sends the same message)."""
        await self.transport.send(self.build(payload), link=payload.get("link"))
