import httpx


async def test_create_then_get(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/v1/users",
        json={"email": "ada@example.com", "username": "ada", "password": "correct horse battery"},
    )
    assert created.status_code == 201, created.text
    fetched = await client.get(created.headers["location"])
    assert fetched.json() == created.json()
