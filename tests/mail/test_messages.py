"""A mail as `Mailer.build` writes it: short ASCII headers are stored as they are, and the
message is byte for byte what `email.policy.default` makes of the same fields."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from users_api.mail.messages import Mailer
from users_api.mail.transport import FileTransport


def _mailer(sender: str = "Users API <noreply@example.com>") -> Mailer:
    return Mailer(FileTransport(Path("unused")), sender, "https://app.example.com")


def _payload(**changes: str) -> dict[str, str]:
    payload = {
        "to": "someone@example.com",
        "subject": "Verify your email address",
        "text": "Follow the link:\nhttps://app.example.com/verify-email?token=" + "x" * 43,
        "message_id": "<0123456789abcdef.1@example.com>",
        "date": "Fri, 04 Dec 2026 18:00:00 +0000",
    }
    return payload | changes


def _through_the_policy(sender: str, payload: dict[str, str]) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = payload["to"]
    message["Subject"] = payload["subject"]
    message["Date"] = payload["date"]
    message["Message-ID"] = payload["message_id"]
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(payload["text"])
    return bytes(message)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"subject": "Ein Passwort für Sie: " + "ä" * 40},  # encoded by the policy
        {"subject": "A subject long enough to be folded " + "onto a second line " * 4},
        {"to": "jörg@exämple.com"},
    ],
)
def test_a_mail_is_what_the_policy_makes_of_it(changes: dict[str, str]) -> None:
    payload = _payload(**changes)
    built = _mailer().build(payload)
    assert bytes(built) == _through_the_policy("Users API <noreply@example.com>", payload)


def test_a_line_break_in_a_header_is_refused_not_injected() -> None:
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        _mailer().build(_payload(subject="Hello\r\nBcc: victim@example.com"))


def test_the_date_mailed_is_written_unchanged() -> None:
    built = _mailer().build(_payload())
    assert built["Date"] == "Fri, 04 Dec 2026 18:00:00 +0000"
    assert built["Date"].datetime.utcoffset().total_seconds() == 0
