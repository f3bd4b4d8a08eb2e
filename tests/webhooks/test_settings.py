"""The webhook settings as the environment gives them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from users_api.config import Settings, describe_error


def test_the_retry_schedule_is_read_from_a_comma_separated_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEBHOOK_RETRY_SCHEDULE", "1, 2.5,60")
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "4")
    settings = Settings(_env_file=None)
    assert settings.webhook_retry_schedule == (1.0, 2.5, 60.0)
    assert settings.webhook_max_attempts == 4
    assert settings.webhook_allow_private is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_RETRY_SCHEDULE", "5,soon"),
        ("WEBHOOK_RETRY_SCHEDULE", "5,0"),
        ("WEBHOOK_RETRY_SCHEDULE", ","),
        ("WEBHOOK_MAX_ATTEMPTS", "0"),
        ("WEBHOOK_TIMEOUT_SECONDS", "0"),
    ],
)
def test_a_bad_webhook_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert describe_error(caught.value).startswith(f"invalid setting {name}:")
