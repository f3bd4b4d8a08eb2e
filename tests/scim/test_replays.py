"""What Microsoft Entra ID and Okta send, as their documentation shows it, replayed in
order; each step asserts what the service stored (read back through the REST API)."""

from __future__ import annotations

import httpx

from tests.conftest import ADMIN_PASSWORD, Admin, asgi_client, login
from tests.scim.conftest import PATCH_SCHEMA, SCIM

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


async def _stored(scim: httpx.AsyncClient, admin: Admin, user_id: str) -> dict[str, object]:
    """The user as the REST API shows it to an admin."""
    async with asgi_client(scim._transport.app) as rest:  # type: ignore[attr-defined]
        tokens = await login(rest, admin.username, ADMIN_PASSWORD)
        shown = await rest.get(
            f"/api/v1/users/{user_id}",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
    assert shown.status_code == 200, shown.text
    user: dict[str, object] = shown.json()
    return user


async def test_entra_id_user_life_cycle(scim: httpx.AsyncClient, admin: Admin) -> None:
    # Does the user exist?
    name = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"
    found = await scim.get(f"{SCIM}/Users", params={"filter": f'userName eq "{name}"'})
    assert found.status_code == 200
    assert found.json()["totalResults"] == 0
    created = await scim.post(
        f"{SCIM}/Users",
        json={
            "schemas": [USER, ENTERPRISE],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": name,
            "active": True,
            "emails": [
                {
                    "primary": True,
                    "type": "work",
                    "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com",
                }
            ],
            "meta": {"resourceType": "User"},
            "name": {
                "formatted": "givenName familyName",
                "familyName": "familyName",
                "givenName": "givenName",
            },
            "roles": [],
            ENTERPRISE: {"department": "Finance", "employeeNumber": "42"},
        },
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert created.json()[ENTERPRISE] == {"department": "Finance", "employeeNumber": "42"}
    stored = await _stored(scim, admin, user_id)
    assert stored["username"] == name
    assert stored["full_name"] == "givenName familyName"
    assert stored["email"] == "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"
    # Found by the work email and by externalId.
    by_email = await scim.get(
        f"{SCIM}/Users",
        params={
            "filter": 'emails[type eq "work"].value eq '
            '"test_user_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"'
        },
    )
    assert [r["id"] for r in by_email.json()["Resources"]] == [user_id]
    by_external = await scim.get(
        f"{SCIM}/Users",
        params={"filter": 'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"'},
    )
    assert by_external.json()["totalResults"] == 1
    # Entra's update: capitalised ops, a value-filtered path, a sub-attribute.
    patched = await scim.patch(
        f"{SCIM}/Users/{user_id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {
                    "op": "Replace",
                    "path": 'emails[type eq "work"].value',
                    "value": "updatedEmail@microsoft.com",
                },
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
                {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Sales"},
            ],
        },
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"]["familyName"] == "updatedFamilyName"
    assert patched.json()[ENTERPRISE]["department"] == "Sales"
    stored = await _stored(scim, admin, user_id)
    assert stored["email"] == "updatedEmail@microsoft.com"
    assert stored["email_verified"] is False
    # Soft delete: active false, sent as a string.
    disabled = await scim.patch(
        f"{SCIM}/Users/{user_id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        },
    )
    assert disabled.status_code == 200, disabled.text
    stored = await _stored(scim, admin, user_id)
    assert stored["is_active"] is False
    # Hard delete.
    assert (await scim.delete(f"{SCIM}/Users/{user_id}")).status_code == 204
    assert (await scim.get(f"{SCIM}/Users/{user_id}")).status_code == 404


async def test_entra_id_group_life_cycle(scim: httpx.AsyncClient) -> None:
    member = await scim.post(
        f"{SCIM}/Users",
        json={"schemas": [USER], "userName": "member", "emails": [{"value": "m@example.com"}]},
    )
    member_id = member.json()["id"]
    created = await scim.post(
        f"{SCIM}/Groups",
        json={
            "schemas": [GROUP],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
    )
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    found = await scim.get(
        f"{SCIM}/Groups",
        params={"excludedAttributes": "members", "filter": 'displayName eq "displayName"'},
    )
    assert found.json()["totalResults"] == 1
    assert "members" not in found.json()["Resources"][0]
    url = f"{SCIM}/Groups/{group_id}"
    added = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Add", "path": "members", "value": [{"$ref": None, "value": member_id}]}
            ],
        },
    )
    assert added.status_code == 200, added.text
    assert [m["value"] for m in added.json()["members"]] == [member_id]
    is_member = await scim.get(
        f"{SCIM}/Groups",
        params={
            "filter": f'id eq "{group_id}" and members eq "{member_id}"',
            "excludedAttributes": "members",
        },
    )
    assert is_member.json()["totalResults"] == 1
    removed = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": member_id}]}
            ],
        },
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["members"] == []
    renamed = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "Replace", "path": "displayName", "value": "1879db59"}],
        },
    )
    assert renamed.json()["displayName"] == "1879db59"
    assert (await scim.delete(url)).status_code == 204


async def test_okta_user_life_cycle(scim: httpx.AsyncClient, admin: Admin) -> None:
    # The connection test.
    probe = await scim.get(f"{SCIM}/Users", params={"count": 2, "startIndex": 1})
    assert probe.status_code == 200
    assert probe.json()["totalResults"] == 1  # the admin
    assert probe.json()["itemsPerPage"] == 1
    name = "isaac.brock@example.com"  # Okta's login: the user's own address
    exists = await scim.get(
        f"{SCIM}/Users",
        params={"filter": f'userName eq "{name}"', "startIndex": 1, "count": 100},
    )
    assert exists.json()["totalResults"] == 0
    created = await scim.post(
        f"{SCIM}/Users",
        json={
            "schemas": [USER],
            "userName": name,
            "name": {"givenName": "Isaac", "familyName": "Brock"},
            "emails": [{"primary": True, "value": name, "type": "work"}],
            "displayName": "Isaac Brock",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [],
            "password": "a much longer passphrase than Okta's example",
            "active": True,
        },
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert created.json()["displayName"] == "Isaac Brock"
    stored = await _stored(scim, admin, user_id)
    assert stored["full_name"] == "Isaac Brock"
    assert stored["username"] == name
    # Okta's path-less deactivation.
    deactivated = await scim.patch(
        f"{SCIM}/Users/{user_id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        },
    )
    assert deactivated.status_code == 200, deactivated.text
    assert (await _stored(scim, admin, user_id))["is_active"] is False
    # A profile push: the whole user, by PUT.
    body = created.json() | {"name": {"givenName": "Isaac", "familyName": "Brock-Smith"}}
    body["active"] = True
    del body["meta"]
    replaced = await scim.put(f"{SCIM}/Users/{user_id}", json=body)
    assert replaced.status_code == 200, replaced.text
    stored = await _stored(scim, admin, user_id)
    assert stored["full_name"] == "Isaac Brock-Smith"
    assert stored["is_active"] is True


async def test_okta_group_push(scim: httpx.AsyncClient) -> None:
    ids = []
    for name in ("ann", "ben"):
        user = await scim.post(
            f"{SCIM}/Users",
            json={
                "schemas": [USER],
                "userName": name,
                "emails": [{"value": f"{name}@example.com"}],
            },
        )
        ids.append(user.json()["id"])
    created = await scim.post(
        f"{SCIM}/Groups",
        json={"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []},
    )
    group_id = created.json()["id"]
    url = f"{SCIM}/Groups/{group_id}"
    renamed = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {"op": "replace", "value": {"id": group_id, "displayName": "Test SCIMv2 renamed"}}
            ],
        },
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["displayName"] == "Test SCIMv2 renamed"
    added = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {
                    "op": "add",
                    "path": "members",
                    "value": [
                        {"value": ids[0], "display": "ann"},
                        {"value": ids[1], "display": "ben"},
                    ],
                }
            ],
        },
    )
    assert sorted(m["value"] for m in added.json()["members"]) == sorted(ids)
    removed = await scim.patch(
        url,
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "remove", "path": f'members[value eq "{ids[0]}"]'}],
        },
    )
    assert [m["value"] for m in removed.json()["members"]] == [ids[1]]


async def test_entra_updates_the_work_email_of_a_user_made_over_rest(
    scim: httpx.AsyncClient, admin: Admin
) -> None:
    """A user the REST API made has one email, which SCIM shows as the primary work one."""
    found = await scim.get(f"{SCIM}/Users", params={"filter": 'emails[type eq "work"]'})
    assert [r["userName"] for r in found.json()["Resources"]] == [admin.username]
    patched = await scim.patch(
        f"{SCIM}/Users/{admin.id}",
        json={
            "schemas": [PATCH_SCHEMA],
            "Operations": [
                {
                    "op": "Replace",
                    "path": 'emails[type eq "work"].value',
                    "value": "new@example.com",
                }
            ],
        },
    )
    assert patched.status_code == 200, patched.text
    assert (await _stored(scim, admin, str(admin.id)))["email"] == "new@example.com"
