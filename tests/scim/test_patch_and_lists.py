"""PATCH errors as RFC 7644 3.12 names them; lists: pages, sorting, attributes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.scim.conftest import PATCH_SCHEMA, SCIM, new_user
from users_api.scim.discovery import ENTERPRISE_SCHEMA as ENTERPRISE


async def _create(scim: httpx.AsyncClient, name: str, **extra: Any) -> dict[str, object]:
    created = await scim.post(f"{SCIM}/Users", json=new_user(name, **extra))
    assert created.status_code == 201, created.text
    resource: dict[str, object] = created.json()
    return resource


def _ops(*operations: dict[str, object]) -> dict[str, object]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        (_ops({"op": "replace", "path": "nope", "value": 1}), "invalidPath"),
        (_ops({"op": "replace", "path": "emails[[", "value": 1}), "invalidPath"),
        (_ops({"op": "replace", "path": "id", "value": "x"}), "mutability"),
        (_ops({"op": "replace", "path": "active", "value": "maybe"}), "invalidValue"),
        (_ops({"op": "replace", "path": "userName", "value": "no spaces allowed"}), "invalidValue"),
        (_ops({"op": "move", "path": "active", "value": True}), "invalidSyntax"),
        ({"schemas": [PATCH_SCHEMA], "Operations": []}, "invalidSyntax"),
        ({"Operations": "nope"}, "invalidSyntax"),
        (_ops({"op": "remove"}), "noTarget"),
    ],
)
async def test_a_bad_patch_is_400_with_its_scim_type_and_changes_nothing(
    scim: httpx.AsyncClient, body: dict[str, object], scim_type: str
) -> None:
    user = await _create(scim, "ada")
    response = await scim.patch(f"{SCIM}/Users/{user['id']}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["scimType"] == scim_type
    assert (await scim.get(f"{SCIM}/Users/{user['id']}")).json() == user


async def test_patch_as_clients_send_it(scim: httpx.AsyncClient) -> None:
    user = await _create(scim, "ada", title="old")
    url = f"{SCIM}/Users/{user['id']}"
    patched = await scim.patch(
        url,
        json=_ops(
            {"op": "REPLACE", "value": {"name.givenName": "Ada", "title": "new"}},
            {"op": "Add", "path": "phoneNumbers", "value": [{"value": "+1", "type": "work"}]},
            {"op": "remove", "path": 'phoneNumbers[type eq "home"]'},
            {"op": "Replace", "path": "active", "value": "True"},
        ),
        headers={"If-Match": 'W/"1"'},
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"]["givenName"] == "Ada"
    assert body["title"] == "new"
    assert body["phoneNumbers"] == [{"value": "+1", "type": "work"}]
    assert body["meta"]["version"] == 'W/"2"'
    stale = await scim.patch(
        url, json=_ops({"op": "remove", "path": "title"}), headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    removed = await scim.patch(url, json=_ops({"op": "remove", "path": "title"}))
    assert "title" not in removed.json()


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}


async def test_entra_forms_are_kept_in_the_schemas_shape(scim: httpx.AsyncClient) -> None:
    """What Entra sends as strings or bare ids (booleans as "True", a manager as its id),
    and a custom extension it maps, as found from outside with Entra's request shapes."""
    boss: dict[str, Any] = await _create(scim, "boss")
    emails = [
        {"value": "ada@example.com", "type": "work", "primary": "True"},
        {"value": "ada@home.example.org", "type": "home", "primary": "True"},
    ]
    roles = [{"value": "Engineer", "primary": "True", "type": "WindowsAzureActiveDirectoryRole"}]
    ada: dict[str, Any] = await _create(scim, "ada", emails=emails, roles=roles)
    assert [email["primary"] for email in ada["emails"]] == [True, False]
    assert ada["roles"][0]["primary"] is True
    url = f"{SCIM}/Users/{ada['id']}"
    home = {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True}
    moved = (await scim.patch(url, json=_patch(home))).json()
    assert [email["primary"] for email in moved["emails"]] == [False, True]
    manager = {"op": "Add", "path": f"{ENTERPRISE}:manager", "value": boss["id"]}
    custom = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
    mapped = {"op": "Add", "path": f"{custom}:CustomAttribute", "value": "y"}
    answer = await scim.patch(url, json=_patch(manager, mapped))
    assert answer.status_code == 200, answer.text
    assert answer.json()[ENTERPRISE]["manager"] == {"value": boss["id"]}
    assert custom not in answer.json()  # kept nowhere, as in a create
    found = await scim.get(
        f"{SCIM}/Users", params={"filter": f'{ENTERPRISE}:manager.value eq "{boss["id"]}"'}
    )
    assert [user["id"] for user in found.json()["Resources"]] == [ada["id"]]
    listed = [{"op": "replace", "path": f"{ENTERPRISE}:manager", "value": [{"value": "x"}]}]
    assert (await scim.patch(url, json=_patch(*listed))).json()[ENTERPRISE]["manager"] == {
        "value": "x"
    }


async def test_pages_sorting_and_attributes(scim: httpx.AsyncClient) -> None:
    for name in ("carol", "ada", "bob"):
        await _create(scim, name, title=name.upper())
    page = await scim.get(
        f"{SCIM}/Users",
        params={"startIndex": 2, "count": 1, "sortBy": "userName", "sortOrder": "descending"},
    )
    body = page.json()
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (3, 2, 1)
    assert [r["userName"] for r in body["Resources"]] == ["bob"]
    lean = await scim.get(
        f"{SCIM}/Users", params={"attributes": "userName,name.givenName", "sortBy": "userName"}
    )
    assert [sorted(r) for r in lean.json()["Resources"]] == [["id", "schemas", "userName"]] * 3
    without = await scim.get(f"{SCIM}/Users", params={"excludedAttributes": "title,emails"})
    assert all("title" not in r and "emails" not in r for r in without.json()["Resources"])
    past = await scim.get(f"{SCIM}/Users", params={"startIndex": 10})
    assert past.json()["totalResults"] == 3
    assert past.json()["Resources"] == []
    huge = await scim.post(
        f"{SCIM}/Users/.search", json={"count": 100000, "filter": 'title sw "a"'}
    )
    assert [r["userName"] for r in huge.json()["Resources"]] == ["ada"]
    for params in ({"sortBy": "password"}, {"sortOrder": "sideways"}, {"count": "many"}):
        refused = await scim.get(f"{SCIM}/Users", params=params)
        assert refused.status_code == 400, params
        assert refused.json()["scimType"] == "invalidValue"


async def test_discovery_describes_what_is_stored(scim: httpx.AsyncClient) -> None:
    config = (await scim.get(f"{SCIM}/ServiceProviderConfig")).json()
    assert config["patch"]["supported"] is True
    assert config["filter"] == {"supported": True, "maxResults": 1000}
    types = (await scim.get(f"{SCIM}/ResourceTypes")).json()
    assert sorted(t["id"] for t in types["Resources"]) == ["Group", "User"]
    user = (await scim.get(f"{SCIM}/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")).json()
    attributes = {a["name"]: a for a in user["attributes"]}
    assert attributes["userName"]["required"] is True
    assert attributes["emails"]["required"] is True
    assert attributes["password"]["returned"] == "never"
    # and `active`, which no user is without: one sent without it is active
    required = [name for name, a in attributes.items() if a["required"]]
    assert required == ["userName", "active", "emails"]
    created = await scim.post(f"{SCIM}/Users", json=new_user("no-active-sent"))
    assert created.json()["active"] is True
    enterprise = (await scim.get(f"{SCIM}/Schemas/{ENTERPRISE}")).json()
    [manager] = [a for a in enterprise["attributes"] if a["name"] == "manager"]
    assert not any(sub["required"] for sub in manager["subAttributes"])
    group = (await scim.get(f"{SCIM}/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group")).json()
    [display_name] = [a for a in group["attributes"] if a["name"] == "displayName"]
    assert display_name["uniqueness"] == "server"  # a taken one is 409 uniqueness
    missing = await scim.get(f"{SCIM}/Schemas/urn:nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/scim+json"
    unknown = await scim.get(f"{SCIM}/Nope")
    assert unknown.status_code == 404
    assert unknown.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_a_search_at_the_root_lists_users_then_groups(scim: httpx.AsyncClient) -> None:
    """POST /.search (RFC 7644 3.4.3): both types under one filter; a filter on an
    attribute only users have lists users; one neither type takes is 400 invalidFilter."""
    ada = await _create(scim, "ada", externalId="ext-ada")
    group_body = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Ops",
        "externalId": "ext-ops",
    }
    group = (await scim.post(f"{SCIM}/Groups", json=group_body)).json()
    both = await scim.post(f"{SCIM}/.search", json={"filter": 'externalId sw "ext-"'})
    assert both.status_code == 200, both.text
    assert [r["id"] for r in both.json()["Resources"]] == [ada["id"], group["id"]]
    assert both.json()["totalResults"] == 2
    users = await scim.post(f"{SCIM}/.search", json={"filter": 'userName eq "ada"'})
    assert [r["id"] for r in users.json()["Resources"]] == [ada["id"]]
    for bad in ("userName eq", 'bogus eq "x"', "(((("):
        refused = await scim.post(f"{SCIM}/.search", json={"filter": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["scimType"] == "invalidFilter"


async def test_bulk_and_me_are_501_not_404(scim: httpx.AsyncClient) -> None:
    """RFC 7644 3.7 and 3.11: what the service does not offer is 501, in SCIM's form."""
    for method, path in (("POST", "/Bulk"), ("GET", "/Me")):
        answer = await scim.request(method, f"{SCIM}{path}", json={})
        assert answer.status_code == 501, path
        assert answer.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


async def test_sub_attribute_names_are_case_insensitive_in_a_create(
    scim: httpx.AsyncClient,
) -> None:
    """RFC 7643 2.1: `{"Value": …, "Type": "work"}` is an email; it was "emails is
    required" (the top-level names and PATCH paths were case-insensitive already)."""
    body = new_user("ada")
    body["emails"] = [{"Value": "Ada@Example.com", "Type": "work", "PRIMARY": True}]
    body["phoneNumbers"] = [{"VALUE": "+44 1", "type": "Mobile"}]
    created = await scim.post(f"{SCIM}/Users", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["emails"] == [
        {"value": "Ada@example.com", "type": "work", "primary": True}
    ]
    assert created.json()["phoneNumbers"] == [{"value": "+44 1", "type": "Mobile"}]


async def test_a_full_name_made_from_the_name_parts_follows_a_patch_of_one(
    scim: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    """A `formatted` the service made from `givenName` and `familyName` is made again when
    a PATCH changes one of them (it kept "Ada Lovelace" after givenName became "Augusta");
    one the client sent stays as sent."""
    body = new_user("ada", name={"givenName": "Ada", "familyName": "Lovelace"})
    ada: dict[str, Any] = (await scim.post(f"{SCIM}/Users", json=body)).json()
    url = f"{SCIM}/Users/{ada['id']}"
    given = {"op": "replace", "path": "name.givenName", "value": "Augusta"}
    patched = await scim.patch(url, json=_patch(given))
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == {
        "givenName": "Augusta",
        "familyName": "Lovelace",
        "formatted": "Augusta Lovelace",
    }
    rest = await admin_client.get(f"/api/v1/users/{ada['id']}")
    assert rest.json()["full_name"] == "Augusta Lovelace"
    sent = {"op": "replace", "path": "name.formatted", "value": "Countess of Lovelace"}
    assert (await scim.patch(url, json=_patch(sent))).status_code == 200
    family = {"op": "replace", "path": "name.familyName", "value": "King"}
    kept = (await scim.patch(url, json=_patch(family))).json()["name"]
    assert kept["formatted"] == "Countess of Lovelace"
    assert kept["familyName"] == "King"


async def test_an_extension_named_by_its_urn_is_chosen_or_left_out_whole(
    scim: httpx.AsyncClient,
) -> None:
    """`attributes=<extension URN>` answered only `schemas` and `id`, and
    `excludedAttributes=<extension URN>` still sent the extension."""
    extension = {"employeeNumber": "7", "department": "Analytics"}
    ada: dict[str, Any] = await _create(scim, "ada", title="Countess", **{ENTERPRISE: extension})
    url = f"{SCIM}/Users/{ada['id']}"
    chosen = (await scim.get(url, params={"attributes": f"{ENTERPRISE},userName"})).json()
    assert chosen[ENTERPRISE] == extension
    assert sorted(chosen) == sorted(["schemas", "id", "userName", ENTERPRISE])
    left = (await scim.get(url, params={"excludedAttributes": ENTERPRISE.upper()})).json()
    assert ENTERPRISE not in left
    assert left["title"] == "Countess"


async def test_a_managers_display_name_sent_by_a_client_is_not_kept(
    scim: httpx.AsyncClient,
) -> None:
    """`manager.displayName` is read-only (RFC 7643 4.3); it was stored and returned."""
    boss: dict[str, Any] = await _create(scim, "boss")
    manager = {"value": boss["id"], "displayName": "Not Her Name"}
    ada: dict[str, Any] = await _create(scim, "ada", **{ENTERPRISE: {"manager": manager}})
    assert ada[ENTERPRISE] == {"manager": {"value": boss["id"]}}


@pytest.mark.parametrize("with_path", [True, False])
async def test_an_added_primary_email_takes_primary_from_the_others(
    scim: httpx.AsyncClient, admin_client: httpx.AsyncClient, with_path: bool
) -> None:
    """RFC 7644 3.5.2: a value added as `primary` makes the others not primary, so the
    added address becomes the user's email (the old primary kept it, and the new one was
    stored as not primary)."""
    user: dict[str, Any] = await _create(scim, f"adds{int(with_path)}")
    new = {"value": f"new{int(with_path)}@example.com", "type": "work", "primary": True}
    operation: dict[str, Any] = (
        {"op": "add", "path": "emails", "value": [new]}
        if with_path
        else {"op": "add", "value": {"emails": [new]}}
    )
    answer = await scim.patch(f"{SCIM}/Users/{user['id']}", json=_patch(operation))
    assert answer.status_code == 200, answer.text
    primaries = [email["value"] for email in answer.json()["emails"] if email.get("primary")]
    assert primaries == [new["value"]]
    assert len(answer.json()["emails"]) == 2
    shown = await admin_client.get(f"/api/v1/users/{user['id']}")
    assert shown.json()["email"] == new["value"]


@pytest.mark.parametrize(
    "text",
    [
        'emails.type eq "work"',
        'emails[type eq "work"]',
        "emails.primary eq true",
        "emails[primary eq true]",
        "emails.type pr",
        "emails[type pr]",
    ],
)
async def test_both_forms_of_an_email_filter_find_a_user_made_over_rest(
    scim: httpx.AsyncClient, admin_client: httpx.AsyncClient, text: str
) -> None:
    """RFC 7644 3.4.2.2: `emails.type eq "work"` tests the same as `emails[type eq "work"]`.
    A user made over REST keeps no SCIM emails and shows their address as the primary work
    one: only the bracketed forms found them."""
    made = await admin_client.post(
        "/api/v1/users",
        json={"email": "rest@example.com", "username": "rest", "password": "a long pass phrase 9"},
    )
    assert made.status_code == 201, made.text
    found = await scim.get(f"{SCIM}/Users", params={"filter": f'({text}) and userName eq "rest"'})
    assert found.status_code == 200, found.text
    assert [user["id"] for user in found.json()["Resources"]] == [made.json()["id"]]
    shown = found.json()["Resources"][0]["emails"]
    assert shown == [{"value": "rest@example.com", "type": "work", "primary": True}]
