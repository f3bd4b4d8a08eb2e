"""The token endpoint's grants (RFC 6749): `password` and `refresh_token`, nothing else."""

from __future__ import annotations

import httpx
import pytest

from tests.auth.helpers import PASSWORD, bearer, register, register_and_login

TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"


@pytest.mark.parametrize(
    "grant_type", ["client_credentials", "authorization_code", "PASSWORD", "", "password "]
)
async def test_other_grant_types_are_refused(client: httpx.AsyncClient, grant_type: str) -> None:
    await register(client, "ada")
    response = await client.post(
        TOKEN, data={"grant_type": grant_type, "username": "ada", "password": PASSWORD}
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith(":unsupported-grant-type")
    assert body["error"] == "unsupported_grant_type"  # RFC 6749 §5.2
    assert "access_token" not in body
    # Refused before anything else is read: no username or password needed to be told.
    bare = await client.post(TOKEN, data={"grant_type": grant_type})
    assert bare.status_code == 400


async def test_the_password_grant_with_or_without_its_grant_type(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "ada")
    for form in ({"grant_type": "password"}, {}):
        response = await client.post(TOKEN, data={"username": "ada", "password": PASSWORD} | form)
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "bearer"


async def _refresh_grant(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(TOKEN, data={"grant_type": "refresh_token", "refresh_token": token})


async def test_the_refresh_grant_rotates_as_refresh_does(client: httpx.AsyncClient) -> None:
    _, first = await register_and_login(client, "ada")
    response = await _refresh_grant(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get(ME, headers=bearer(second["access_token"]))).status_code == 200

    # The grant and the JSON endpoint are one: a token used up by one is reuse at the other.
    reused = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert (await _refresh_grant(client, second["refresh_token"])).status_code == 401


async def test_the_refresh_grant_needs_its_token(client: httpx.AsyncClient) -> None:
    response = await client.post(TOKEN, data={"grant_type": "refresh_token"})
    assert response.status_code == 422
    unknown = await _refresh_grant(client, "not a token we issued")
    assert unknown.status_code == 401
    assert unknown.headers["www-authenticate"] == "Bearer"


async def test_an_access_token_is_no_refresh_token(client: httpx.AsyncClient) -> None:
    _, tokens = await register_and_login(client, "ada")
    access = tokens["access_token"]
    as_json = await client.post(REFRESH, json={"refresh_token": access})
    assert as_json.status_code == 401, as_json.text
    as_grant = await _refresh_grant(client, access)
    assert as_grant.status_code == 401, as_grant.text
    logout = await client.post("/api/v1/auth/logout", json={"refresh_token": access})
    assert logout.status_code == 204  # an unknown token: nothing to end, nothing said
    # The real refresh token still works: presenting the wrong one ended nothing.
    again = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 200
