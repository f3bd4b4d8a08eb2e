"""What each mail says: subject, plain text, and the link it carries (if any).

Plain text only: every client shows it, and the link is all a reader needs.
"""

from __future__ import annotations

from typing import Any

Letter = dict[str, Any]


def _minutes(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def password_reset(link: str, ttl_seconds: int) -> Letter:
    return {
        "subject": "Reset your password",
        "text": (
            "Someone (we hope you) asked to reset the password of your account.\n\n"
            f"To choose a new password, open this link within {_minutes(ttl_seconds)}:\n\n"
            f"{link}\n\n"
            "It works once. If you did not ask for this, ignore this mail: your password "
            "stays as it is.\n"
        ),
        "link": link,
    }


def verify_email(link: str, ttl_seconds: int) -> Letter:
    return {
        "subject": "Confirm your email address",
        "text": (
            "Please confirm that this address is yours by opening this link within "
            f"{_minutes(ttl_seconds)}:\n\n{link}\n\n"
            "If you did not sign up or change your address, ignore this mail.\n"
        ),
        "link": link,
    }


def password_changed() -> Letter:
    return {
        "subject": "Your password was changed",
        "text": (
            "The password of your account was just changed, and every session of it "
            "was ended.\n\nIf you did not do this, reset your password at once and "
            "tell your administrator.\n"
        ),
    }


def email_changed() -> Letter:
    """To the old address; it does not name the new one (which is not its reader's)."""
    return {
        "subject": "Your email address was changed",
        "text": (
            "The email address of your account was changed; mail for the account now "
            "goes to the new address.\n\nIf you did not do this, tell your "
            "administrator at once.\n"
        ),
    }
