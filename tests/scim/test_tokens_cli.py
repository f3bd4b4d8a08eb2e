"""`users-api scim-token`: made, listed and revoked as an operator does, in a real process."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.processes import clean_environment, run_cli


async def test_create_prints_the_token_once_stores_its_hash_and_revoke_ends_it(
    tmp_path: Path, fresh_database_url: str
) -> None:
    env = clean_environment(
        tmp_path, DATABASE_URL=fresh_database_url, SECRET_KEY="k" * 40, LOG_FORMAT="json"
    )
    created = run_cli("scim-token", "create", "--name", "Entra ID", cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("scim_")
    assert len(token) > 40
    listed = run_cli("scim-token", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert token not in listed.stdout
    [line] = listed.stdout.splitlines()
    token_id, name, *_, state = line.split("\t")
    assert (name, state) == ("Entra ID", "active")
    engine = create_async_engine(fresh_database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            stored = (await connection.execute(text("SELECT token_hash FROM scim_tokens"))).all()
        assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    finally:
        await engine.dispose()
    revoked = run_cli("scim-token", "revoke", token_id, cwd=tmp_path, env=env)
    assert revoked.returncode == 0, revoked.stderr
    listed = run_cli("scim-token", "list", cwd=tmp_path, env=env)
    assert listed.stdout.split("\t")[-1].startswith("revoked ")


def test_revoke_of_no_uuid_or_unknown_id_fails_with_one_line(
    tmp_path: Path, fresh_database_url: str
) -> None:
    env = clean_environment(
        tmp_path, DATABASE_URL=fresh_database_url, SECRET_KEY="k" * 40, LOG_FORMAT="json"
    )
    bad = run_cli("scim-token", "revoke", "nope", cwd=tmp_path, env=env)
    assert bad.returncode != 0
    assert "not a UUID" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = run_cli(
        "scim-token", "revoke", "0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e", cwd=tmp_path, env=env
    )
    assert unknown.returncode != 0
    assert "No provisioning token" in unknown.stderr
