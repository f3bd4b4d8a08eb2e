import httpx


async def test_register_login_and_read_self(client: httpx.AsyncClient) -> None:
    password = "correct horse battery"
    created = await client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "ada", "password": password},
    )
    assert created.status_code == 201, created.text
    token = await client.post(
        "/api/v1/auth/token", data={"username": "ADA@example.com", "password": password}
    )
    assert token.status_code == 200, token.text
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    fetched = await client.get(created.headers["location"], headers=headers)
    assert fetched.json() == created.json()
    me = await client.get("/api/v1/users/me", headers=headers)
    assert me.json() == created.json()


async def test_admin_lists(admin_client: httpx.AsyncClient) -> None:
    listed = await admin_client.get("/api/v1/users")
    assert listed.status_code == 200, listed.text
    assert [u["username"] for u in listed.json()["items"]] == ["root"]
