"""Settings: URL spellings, defaults, `.env` against the environment, and the error line."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from users_api.config import DotEnvError, Settings, describe_error, normalize_database_url


@pytest.fixture(autouse=True)
def _no_settings_in_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Whatever the developer's shell or `.env` says, these tests start from nothing."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)


def _error_line(**environment: str) -> str:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        with pytest.raises(ValidationError) as caught:
            Settings()
    return describe_error(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://ada:s3cret@db.example:6543/app",
            "postgresql+asyncpg://ada:s3cret@db.example:6543/app",
        ),
        ("postgresql://ada@db/app", "postgresql+asyncpg://ada@db/app"),
        ("postgresql+asyncpg://ada@db/app", "postgresql+asyncpg://ada@db/app"),
        # Percent-encoded passwords and query options survive.
        (
            "postgresql://ada:p%40ss@db/app?ssl=require",
            "postgresql+asyncpg://ada:p%40ss@db/app?ssl=require",
        ),
        (
            "postgres://postgres@/users_api?host=/tmp/sock",
            "postgresql+asyncpg://postgres@/users_api?host=%2Ftmp%2Fsock",
        ),
        # libpq's sslmode, as hosted databases hand URLs out, is asyncpg's ssl.
        (
            "postgres://ada:pw@db.example/app?sslmode=require",
            "postgresql+asyncpg://ada:pw@db.example/app?ssl=require",
        ),
    ],
)
def test_database_url_spellings_become_asyncpg(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected
    assert Settings(database_url=given).database_url == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("mysql://x/y", "must be a postgresql+asyncpg:// URL, not mysql://"),
        ("postgresql+psycopg2://db/app", "must be a postgresql+asyncpg:// URL"),
        ("not a url", "is not a valid database URL"),
        ("postgresql://db", "must name a database"),
        ("postgresql://db/app?foo=bar", "the URL parameter foo= is none asyncpg takes"),
    ],
)
def test_database_url_that_is_not_postgresql_is_refused(given: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("+", r"\+")):
        normalize_database_url(given)
    assert _error_line(DATABASE_URL=given).startswith(f"invalid setting DATABASE_URL: {message}")


def test_blank_database_url_means_embedded() -> None:
    assert Settings(database_url="  ").database_url is None


def test_defaults_follow_the_contract() -> None:
    settings = Settings()
    assert settings.database_url is None
    assert settings.data_dir == Path(".data")
    assert settings.access_token_ttl_seconds == 900
    assert settings.refresh_token_ttl_seconds == 1_209_600
    assert settings.allow_registration is True
    assert settings.password_min_length == 12
    assert settings.registrations_per_address == 20
    assert settings.db_pool_size >= 1
    assert settings.db_echo is False
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        settings.require_database_url()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://x/y", "must be a postgresql+asyncpg:// URL, not mysql://"),
        ("DB_POOL_SIZE", "abc", "Input should be a valid integer"),
        ("DB_POOL_SIZE", "0", "Input should be greater than or equal to 1"),
        ("SECRET_KEY", "short", "must be at least 32 bytes long"),
        ("ALLOW_REGISTRATION", "perhaps", "Input should be a valid boolean"),
        # a bad sender failed every mail in the outbox, after a start-up that said nothing
        ("MAIL_FROM", "not an address", "must be one address"),
        ("MAIL_FROM", "a@example.com, b@example.com", "must be one address"),
        ("MAIL_FROM", "x@", "must be one address"),
        # each was accepted, then failed at the first connection, link or preflight
        ("DATABASE_URL", "postgresql://db:99999/app", "port 99999 is not between 1 and 65535"),
        ("DATABASE_URL", "postgresql://db:0/app", "port 0 is not between 1 and 65535"),
        ("DATABASE_URL", "postgresql://db:abc/app", "is not a valid database URL"),
        ("DATABASE_REPLICA_URLS", "postgresql://r:70000/app", "port 70000 is not between"),
        ("CORS_ORIGINS", "https://app.example.com:99999", "'https://app.example.com:99999' is"),
        ("PUBLIC_URL", "https://users.example.com/?next=1", "must have no query or fragment"),
        ("PUBLIC_URL", "https://users.example.com/#top", "must have no query or fragment"),
        ("PUBLIC_URL", "https://users.example.com:99999", "Port out of range"),
        # Past PostgreSQL's integer: every connection would be refused, every request 503.
        ("DB_STATEMENT_TIMEOUT_MS", "99999999999", "Input should be less than or equal to"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    line = _error_line(**{variable: value})
    assert line.startswith(f"invalid setting {variable}: {message}")
    assert "\n" not in line


def test_several_bad_settings_still_make_one_line() -> None:
    line = _error_line(DB_POOL_SIZE="abc", SECRET_KEY="short")
    assert "\n" not in line
    assert "DB_POOL_SIZE" in line
    assert "SECRET_KEY" in line


def test_an_empty_data_dir_is_the_default_folder() -> None:
    assert Settings(data_dir="").data_dir == Path(".data")
    assert Settings(data_dir="  ").data_dir == Path(".data")
    assert Settings(data_dir="kept").data_dir == Path("kept")


def test_a_previous_mfa_key_is_as_long_as_a_secret_key() -> None:
    """It opened secrets sealed under an older SECRET_KEY, which was held to 32 bytes."""
    assert _error_line(MFA_PREVIOUS_SECRET_KEY="short").startswith(
        "invalid setting MFA_PREVIOUS_SECRET_KEY: must be at least 32 bytes long"
    )


def test_secret_key_is_measured_in_bytes() -> None:
    assert Settings(secret_key="é" * 16).secret_key is not None  # 16 characters, 32 bytes
    with pytest.raises(ValidationError, match="32 bytes"):
        Settings(secret_key="é" * 15 + "a")  # 31 bytes


def test_dotenv_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("DB_POOL_SIZE=7\nDB_ECHO=true\n")
    assert Settings().db_pool_size == 7

    monkeypatch.setenv("DB_POOL_SIZE", "3")
    settings = Settings()
    assert settings.db_pool_size == 3
    assert settings.db_echo is True


def test_a_dotenv_key_that_is_no_setting_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_POOL_SIZE=7\nALOW_REGISTRATION=false\nSMTP_URLL=\n")
    with pytest.raises(ValidationError) as caught:
        Settings()
    line = describe_error(caught.value)
    assert "unknown setting ALOW_REGISTRATION in .env (did you mean ALLOW_REGISTRATION?)" in line
    assert "unknown setting SMTP_URLL in .env" in line  # an empty value is no excuse
    assert "DB_POOL_SIZE" not in line


@pytest.mark.parametrize(
    "line", ["ALLOW_REGISTRATION: false", 'SMTP_URL="smtp://mail.example', "just words"]
)
def test_a_dotenv_line_that_is_no_key_value_pair_is_an_error_naming_it(
    line: str, tmp_path: Path
) -> None:
    """python-dotenv skips such a line with a warning: the setting it meant would have
    its default without a word (an open registration, say)."""
    (tmp_path / ".env").write_text(f"DB_POOL_SIZE=7\n{line}\n")
    with pytest.raises(DotEnvError, match=r"^line 2 of \.env is not KEY=value: ") as caught:
        Settings()
    assert line[:20] in str(caught.value)


def test_a_dotenv_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    with pytest.raises(DotEnvError, match=r"^\.env is not a file"):
        Settings()


def test_a_variable_of_the_environment_that_is_no_setting_is_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALOW_REGISTRATION", "false")
    assert Settings().allow_registration is True


def test_first_admin_settings_are_all_three_or_none() -> None:
    line = _error_line(FIRST_ADMIN_EMAIL="root@example.com", FIRST_ADMIN_USERNAME="root")
    assert line == (
        "invalid settings: FIRST_ADMIN_EMAIL and FIRST_ADMIN_USERNAME are set but "
        "FIRST_ADMIN_PASSWORD is not: set all three to create the first admin, or none"
    )
    # Blank counts as unset.
    assert Settings(first_admin_email=" ", first_admin_username="").first_admin_email is None


@pytest.mark.parametrize(("given", "level"), [("DEBUG", "debug"), (" Warning ", "warning")])
def test_log_level_is_read_in_any_case(given: str, level: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOG_LEVEL", given)
        assert Settings().log_level == level


def test_log_settings_default_to_info_and_auto_and_refuse_the_unknown() -> None:
    assert (Settings().log_level, Settings().log_format) == ("info", "auto")
    assert _error_line(LOG_FORMAT="xml").startswith("invalid setting LOG_FORMAT: Input should be")
    assert _error_line(LOG_LEVEL="verbose").startswith("invalid setting LOG_LEVEL:")


_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def _example_entries() -> dict[str, str]:
    """`# NAME=default` lines of .env.example, each after a line of comment."""
    entries: dict[str, str] = {}
    lines = _EXAMPLE.read_text().splitlines()
    for before, line in itertools.pairwise(lines):
        found = re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=(.*)", line)
        if found:
            assert before.startswith("# "), f"{found[1]} has no comment line above it"
            entries[found[1]] = found[2]
    return entries


def _as_written(default: object) -> str:
    if default is None or default == ():
        return ""
    if isinstance(default, tuple):  # a comma-separated list
        return ",".join(str(part) for part in default)
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def test_env_example_lists_every_setting_with_its_default() -> None:
    entries = _example_entries()
    fields = {name.upper(): field.default for name, field in Settings.model_fields.items()}
    assert sorted(entries) == sorted(fields)
    for name, default in fields.items():
        assert entries[name] == _as_written(default), name


def test_env_example_copied_to_dotenv_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(_EXAMPLE.read_text())
    assert Settings() == Settings(_env_file=None)
    # Uncommented, every value it shows is the default too (empty meaning unset), except
    # that a FIRST_ADMIN_* trio must be given whole: those stay out.
    uncommented = [
        f"{name}={value}"
        for name, value in _example_entries().items()
        if not name.startswith("FIRST_ADMIN_")
    ]
    (tmp_path / ".env").write_text("\n".join(uncommented) + "\n")
    assert Settings() == Settings(_env_file=None)
