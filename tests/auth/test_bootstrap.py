"""The first admin from FIRST_ADMIN_*, and the generated secret key."""

from __future__ import annotations

import multiprocessing
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from tests.auth.helpers import app_with
from tests.conftest import login
from users_api.config import Settings
from users_api.security.secret import SecretKeyError, _stored_key, resolve_secret_key

FIRST = {
    "first_admin_email": "boss@example.com",
    "first_admin_username": "boss",
    "first_admin_password": SecretStr("the boss password is long"),
}


async def test_first_admin_is_created_once(settings: Settings) -> None:
    async with app_with(settings, **FIRST) as client:
        tokens = await login(client, "boss", "the boss password is long")
        me = await client.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.json()["is_admin"] is True
        first_id = me.json()["id"]
    # A second start (another worker, a restart) changes nothing.
    async with app_with(settings, **FIRST) as client:
        tokens = await login(client, "boss@example.com", "the boss password is long")
        listed = await client.get(
            "/api/v1/users", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert [user["id"] for user in listed.json()["items"]] == [first_id]


def test_secret_key_is_generated_once_with_mode_0600(tmp_path: Path, settings: Settings) -> None:
    local = settings.model_copy(update={"secret_key": None, "data_dir": tmp_path / "data"})
    first = resolve_secret_key(local)
    assert len(first) >= 32
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert resolve_secret_key(local) == first


def _key_of(data_dir: str, start: Any) -> bytes:
    start.wait()
    return _stored_key(Path(data_dir) / "secret_key")


# Python 3.12+ warns of fork() in a process with threads (pytest's, coverage's): a child
# could inherit a lock some thread held. The children here only write and read one file.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_workers_starting_at_once_agree_on_one_whole_key(tmp_path: Path) -> None:
    """`serve --workers N` on a fresh DATA_DIR: every worker creates or reads the key at
    once; none may read it half written (it failed 1 start in 6, seen from outside)."""
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager, ProcessPoolExecutor(8, mp_context=context) as pool:
        for attempt in range(20):
            data_dir = tmp_path / str(attempt)
            start = manager.Barrier(8)
            keys = list(pool.map(_key_of, [str(data_dir)] * 8, [start] * 8))
            assert len(set(keys)) == 1
            assert len(keys[0]) >= 32
            assert [p.name for p in data_dir.iterdir()] == ["secret_key"]  # no draft left


def test_short_stored_secret_is_refused(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "secret_key").write_text("too short")
    local = settings.model_copy(update={"secret_key": None, "data_dir": tmp_path})
    with pytest.raises(SecretKeyError, match="shorter than 32 bytes"):
        resolve_secret_key(local)


def test_short_secret_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "short")
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None)


async def test_tokens_from_another_key_are_refused(settings: Settings) -> None:
    async with app_with(settings, **FIRST) as client:
        tokens = await login(client, "boss", "the boss password is long")
    other_key = SecretStr("a completely different secret key of 32+ bytes")
    async with app_with(settings, secret_key=other_key) as other:
        response = await other.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert response.status_code == 401
    assert isinstance(client, httpx.AsyncClient)


async def test_a_first_admin_who_changed_their_email_does_not_stop_the_next_start(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen from outside: once the first admin had a new address, every restart tried to
    create them again, met the taken username and exited (the service stayed down)."""
    async with app_with(settings, **FIRST) as client:
        tokens = await login(client, "boss", "the boss password is long")
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = (await client.get("/api/v1/users/me", headers=auth)).json()
        moved = await client.patch(
            f"/api/v1/users/{me['id']}", json={"email": "new-boss@example.com"}, headers=auth
        )
        assert moved.status_code == 200, moved.text
    async with app_with(settings, **FIRST) as client:
        tokens = await login(client, "boss", "the boss password is long")
        listed = await client.get(
            "/api/v1/users", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert [user["email"] for user in listed.json()["items"]] == ["new-boss@example.com"]
    assert "FIRST_ADMIN_USERNAME boss belongs to a user with another email" in caplog.text
