"""The scaling settings: DB_PGBOUNCER, MIGRATIONS_DATABASE_URL, DATABASE_REPLICA_URLS."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from users_api.config import Settings, describe_error
from users_api.db.replicas import format_position, parse_position


@pytest.mark.parametrize(
    ("given", "read"), [("auto", "auto"), ("1", "true"), ("off", "false"), ("TRUE", "true")]
)
def test_db_pgbouncer_reads_booleans_and_auto(given: str, read: str) -> None:
    assert Settings(db_pgbouncer=given, _env_file=None).db_pgbouncer == read


def test_a_bad_db_pgbouncer_names_the_setting() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(db_pgbouncer="sometimes", _env_file=None)
    assert describe_error(refused.value).startswith("invalid setting DB_PGBOUNCER")


def test_replica_urls_are_comma_separated_and_normalised() -> None:
    settings = Settings(
        database_replica_urls="postgres://a@one/db, postgresql://b@two:5433/db",
        migrations_database_url="postgres://m@direct/db",
        _env_file=None,
    )
    assert settings.database_replica_urls == (
        "postgresql+asyncpg://a@one/db",
        "postgresql+asyncpg://b@two:5433/db",
    )
    assert settings.migrations_database_url == "postgresql+asyncpg://m@direct/db"
    assert settings.replica_max_lag_seconds == 5


def test_a_bad_replica_url_names_the_setting() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_replica_urls="mysql://x@y/z", _env_file=None)
    assert describe_error(refused.value).startswith("invalid setting DATABASE_REPLICA_URLS")


@pytest.mark.parametrize("token", ["0/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"])
def test_a_consistency_token_round_trips(token: str) -> None:
    position = parse_position(token)
    assert position is not None
    assert format_position(position) == token


@pytest.mark.parametrize("token", [None, "", "x", "1/2/3", "G/0", "0/123456789", "-1/0"])
def test_a_malformed_consistency_token_is_no_position(token: str | None) -> None:
    assert parse_position(token) is None
