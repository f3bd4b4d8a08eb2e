"""Reading mailed links and tokens back out of delivered messages."""

from __future__ import annotations

import asyncio
import re
import time
from email.message import EmailMessage

from tests.mail.smtp import SmtpServer

_LINK = re.compile(r"(http://\S+/(reset-password|verify-email)\?token=([A-Za-z0-9_\-]+))")


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    content: str = body.get_content()
    return content


def token_in(message: EmailMessage, page: str) -> str:
    """The token of the message's link to `page` (AssertionError when there is none)."""
    found = [match for match in _LINK.finditer(text_of(message)) if match[2] == page]
    assert len(found) == 1, text_of(message)
    return found[0][3]


def to(messages: list[EmailMessage], address: str, subject: str) -> list[EmailMessage]:
    return [m for m in messages if m["To"] == address and m["Subject"] == subject]


async def arrived(
    smtp: SmtpServer, address: str, subject: str, count: int = 1
) -> list[EmailMessage]:
    """The mails to `address` with `subject`, once `count` of them are here."""
    deadline = time.monotonic() + 10
    while len(found := to(smtp.messages(), address, subject)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} {subject!r} mails came"
        await asyncio.sleep(0.02)
    return found
