"""The outbox over a real SMTP server: delivered once, retried through an outage, shared
by several senders without a message sent twice, and written as .eml with no SMTP_URL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.mail.conftest import mail_settings
from tests.mail.smtp import SmtpServer
from users_api.app import create_app
from users_api.config import Settings
from users_api.db.database import Database, Unit
from users_api.mail.messages import Mailer
from users_api.outbox.sender import Sender, back_off, enqueue
from users_api.users.models import UNIQUE_FIELDS


async def _mail(app: FastAPI, count: int = 1, *, to: str = "ada@example.com") -> None:
    """`count` messages written in one transaction, as a service writes them."""
    mailer = Mailer.from_settings(app.state.settings)

    async def write(unit: Unit) -> None:
        for number in range(count):
            await mailer.enqueue(
                unit,
                to=to,
                subject=f"Message {number}",
                text=f"Follow http://app.example/page?token=t{number}\n",
                link=f"http://app.example/page?token=t{number}",
            )

    await app.state.db.run(write)
    sender: Sender = app.state.outbox
    sender.wake()


async def test_a_message_arrives_with_its_headers(mail_app: FastAPI, smtp: SmtpServer) -> None:
    await _mail(mail_app)
    [message] = await smtp.wait_for(1)
    assert message["To"] == "ada@example.com"
    assert message["From"] == "users-api <no-reply@example.com>"
    assert message["Subject"] == "Message 0"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"]
    body = message.get_body(("plain",))
    assert body is not None
    assert "http://app.example/page?token=t0" in body.get_content()


async def test_a_delivered_message_keeps_no_token(
    mail_app: FastAPI, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    await _mail(mail_app)
    await smtp.wait_for(1)
    for _ in range(100):
        async with engine.connect() as connection:
            row = (
                await connection.execute(text("SELECT payload, delivered_at, attempts FROM outbox"))
            ).one()
        if row.delivered_at is not None:
            break
        await asyncio.sleep(0.02)
    assert row.delivered_at is not None
    assert row.attempts == 1
    assert "token" not in json.dumps(row.payload)


async def test_nothing_is_lost_while_the_mail_server_is_down(
    mail_app: FastAPI, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    smtp.stop()
    await _mail(mail_app)
    for _ in range(200):  # it tries, fails, and keeps the message for later
        async with engine.connect() as connection:
            row = (await connection.execute(text("SELECT attempts, last_error FROM outbox"))).one()
        if row.attempts >= 2:
            break
        await asyncio.sleep(0.02)
    assert row.attempts >= 2
    assert row.last_error
    assert smtp.messages() == []
    smtp.start()
    [message] = await smtp.wait_for(1)
    assert message["Subject"] == "Message 0"


async def test_a_message_survives_a_restart(
    settings: Settings, smtp: SmtpServer, engine: AsyncEngine
) -> None:
    """Written by an app that stops before delivering it; sent by the next one."""
    smtp.stop()
    first = create_app(mail_settings(settings, smtp, outbox_retry_seconds=3600))
    async with first.router.lifespan_context(first):
        await _mail(first)
    smtp.start()
    async with engine.begin() as connection:  # its lease and back-off run out
        await connection.execute(text("UPDATE outbox SET next_attempt_at = now()"))
    second = create_app(mail_settings(settings, smtp))
    async with second.router.lifespan_context(second):
        [message] = await smtp.wait_for(1)
    assert message["Subject"] == "Message 0"


async def test_two_senders_share_one_outbox_and_send_each_mail_once(
    settings: Settings, smtp: SmtpServer
) -> None:
    count = 40
    one = create_app(mail_settings(settings, smtp, outbox_poll_seconds=3600))
    two = create_app(mail_settings(settings, smtp, outbox_poll_seconds=3600))
    async with one.router.lifespan_context(one), two.router.lifespan_context(two):
        await _mail(one, count)
        for _ in range(5):  # both look at once, again and again, while the rows are due
            one.state.outbox.wake()
            two.state.outbox.wake()
            await asyncio.sleep(0.01)
        received = await smtp.wait_for(count)
        await asyncio.sleep(0.3)  # a second copy would come by now
    subjects = sorted(message["Subject"] for message in smtp.messages())
    assert len(received) == count
    assert subjects == sorted(f"Message {number}" for number in range(count))


async def test_with_no_smtp_url_mail_is_written_as_eml_and_its_link_logged(
    settings: Settings, tmp_path: Path, caplog: object
) -> None:
    import logging

    import pytest

    assert isinstance(caplog, pytest.LogCaptureFixture)
    local = settings.model_copy(update={"data_dir": tmp_path, "outbox_poll_seconds": 0.05})
    app = create_app(local)
    with caplog.at_level(logging.INFO, logger="users_api.mail.transport"):
        async with app.router.lifespan_context(app):
            await _mail(app)
            for _ in range(200):
                written = list((tmp_path / "outbox").glob("*.eml"))
                if written:
                    break
                await asyncio.sleep(0.02)
    [path] = written
    content = path.read_text()
    assert "To: ada@example.com" in content
    assert "Auto-Submitted: auto-generated" in content
    assert "http://app.example/page?token=t0" in content
    assert "http://app.example/page?token=t0" in caplog.text


def test_back_off_doubles_up_to_an_hour() -> None:
    waits = [back_off(attempt, base=5).total_seconds() for attempt in (1, 2, 3, 4)]
    assert waits == [5, 10, 20, 40]
    assert back_off(30, base=5).total_seconds() == 3600


async def test_a_stopping_sender_hands_back_the_messages_it_holds(
    settings: Settings, engine: AsyncEngine
) -> None:
    """A sender stopped in the middle of a batch (a restart, a deploy) leaves its rows due
    at once, not held for the lease's 5 minutes; the ones it never began lose the attempt
    their claim counted, the interrupted one keeps it (it may have been sent)."""
    db = await Database.open(settings, unique_fields=UNIQUE_FIELDS)
    started = asyncio.Event()

    async def stuck(payload: Mapping[str, Any], attempt: int) -> None:
        started.set()
        await asyncio.Event().wait()  # a mail server that never answers

    async def write(unit: Unit) -> None:
        for number in range(3):
            await enqueue(unit, "test", {"number": number})

    try:
        await db.run(write)
        sender = Sender(db, {"test": stuck}, poll_seconds=3600)
        sender.start()
        await asyncio.wait_for(started.wait(), 10)
        await sender.stop()
    finally:
        await db.close()
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT attempts, next_attempt_at <= now() AS due FROM outbox")
            )
        ).all()
    assert sorted(row.attempts for row in rows) == [0, 0, 1]
    assert all(row.due for row in rows)
