"""Input a provisioning client may send that once reached the database or the JSON
encoder and came back as a plain-text 500: each is a SCIM answer now."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.scim.conftest import PATCH_SCHEMA, SCIM, new_user

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def _scim_error(response: httpx.Response, status: int, scim_type: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type


@pytest.mark.parametrize(
    "extra",
    [
        {"nickName": "a\x00b"},
        {"title": "x\x00"},
        {"phoneNumbers": [{"value": "+1 555", "type": "w\x00rk"}]},
        {"name": {"givenName": "Ada", "familyName": "Love\x00lace"}},
    ],
)
async def test_a_nul_in_a_kept_attribute_is_400_invalid_value(
    scim: httpx.AsyncClient, extra: dict[str, Any]
) -> None:
    refused = await scim.post(f"{SCIM}/Users", json=new_user("nul", **extra))
    _scim_error(refused, 400, "invalidValue")
    listed = await scim.get(f"{SCIM}/Users", params={"filter": 'userName eq "nul"'})
    assert listed.json()["totalResults"] == 0


async def test_a_nul_in_a_patch_value_is_400_and_changes_nothing(
    scim: httpx.AsyncClient,
) -> None:
    created = await scim.post(f"{SCIM}/Users", json=new_user("nulpatch", nickName="Ada"))
    assert created.status_code == 201, created.text
    url = f"{SCIM}/Users/{created.json()['id']}"
    patch = {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "path": "nickName", "value": "x\x00y"}],
    }
    _scim_error(await scim.patch(url, json=patch), 400, "invalidValue")
    shown = await scim.get(url)
    assert shown.json()["nickName"] == "Ada"
    assert shown.json()["meta"]["version"] == created.json()["meta"]["version"]


@pytest.mark.parametrize("start", [10**19, 10**30, 99999999999999999999999])
async def test_a_start_index_past_every_result_is_an_empty_page(
    scim: httpx.AsyncClient, start: int
) -> None:
    assert (await scim.post(f"{SCIM}/Users", json=new_user("paged"))).status_code == 201
    for answer in (
        await scim.get(f"{SCIM}/Users", params={"startIndex": str(start)}),
        await scim.post(f"{SCIM}/Users/.search", json={"startIndex": start}),
        await scim.get(f"{SCIM}/Groups", params={"startIndex": str(start)}),
    ):
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert page["Resources"] == []
        assert page["itemsPerPage"] == 0
        assert page["startIndex"] >= 2**62


@pytest.mark.parametrize(
    ("resource", "text"),
    [
        ("Users", 'meta.created gt "0001-01-01T00:00:00+01:00"'),
        ("Users", 'meta.lastModified lt "9999-12-31T23:59:59-01:00"'),
        ("Groups", 'meta.lastModified ge "0001-01-01T00:30:00+14:00"'),
    ],
)
async def test_a_time_beyond_the_calendar_in_utc_still_filters(
    scim: httpx.AsyncClient, resource: str, text: str
) -> None:
    """Such a bound is moved to the first or last moment a timestamp holds, which selects
    the same rows: every row is within years 1 to 9999."""
    user = await scim.post(f"{SCIM}/Users", json=new_user("timely"))
    group = await scim.post(f"{SCIM}/Groups", json={"displayName": "Timely"})
    assert user.status_code == group.status_code == 201
    answer = await scim.get(f"{SCIM}/{resource}", params={"filter": text})
    assert answer.status_code == 200, answer.text
    assert answer.json()["totalResults"] == 1


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/Users", {"GET", "HEAD", "POST"}),
        ("DELETE", "/Groups", {"GET", "HEAD", "POST"}),
        (
            "POST",
            "/Users/0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e",
            {"GET", "HEAD", "PUT", "PATCH", "DELETE"},
        ),
        (
            "POST",
            "/Groups/0190f0c8-7a3e-7b6c-9d2e-4f5a6b7c8d9e",
            {"GET", "HEAD", "PUT", "PATCH", "DELETE"},
        ),
    ],
)
async def test_a_wrong_method_names_every_method_of_its_path(
    scim: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    """RFC 9110 15.5.6: `Allow` lists the methods the resource supports (it named only
    the first route's)."""
    answer = await scim.request(method, f"{SCIM}{path}", json={})
    _scim_error(answer, 405, None)
    assert set(answer.headers["allow"].split(", ")) == allowed


ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"name": {"givenName": "Ada", "weird": "x"}}, "weird"),
        ({"title": {"nested": "obj"}}, "title"),
        ({"nickName": ["a", "b"]}, "nickName"),
        ({"phoneNumbers": [{"value": "+1 555", "zzz": "1"}]}, "zzz"),
        ({"phoneNumbers": {"value": "+1 555"}}, "phoneNumbers"),
        ({"addresses": [{"locality": 5}]}, "addresses.locality"),
        ({"roles": [{"value": "r", "primary": "maybe"}]}, "primary"),
        ({ENTERPRISE: {"department": "R&D", "bogus": "x"}}, "bogus"),
    ],
)
async def test_a_kept_attribute_the_schema_does_not_describe_is_400(
    scim: httpx.AsyncClient, extra: dict[str, Any], named: str
) -> None:
    """What is stored is what `/Schemas` says can be: an unlisted sub-attribute or a value
    of another type was stored and returned as sent."""
    refused = await scim.post(f"{SCIM}/Users", json=new_user("shaped", **extra))
    _scim_error(refused, 400, "invalidValue")
    assert named in refused.json()["detail"]
    listed = await scim.get(f"{SCIM}/Users", params={"filter": 'userName eq "shaped"'})
    assert listed.json()["totalResults"] == 0


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "replace", "path": "name.bogus", "value": "x"},
        {"op": "replace", "path": "title", "value": {"nested": "obj"}},
        {"op": "add", "path": f"{ENTERPRISE}:bogus", "value": "x"},
        {"op": "add", "path": "emails", "value": [{"value": "b@example.com", "bogusSub": 1}]},
    ],
)
async def test_a_patch_the_schema_does_not_describe_is_400_and_changes_nothing(
    scim: httpx.AsyncClient, operation: dict[str, Any]
) -> None:
    created = await scim.post(f"{SCIM}/Users", json=new_user("patched", title="Engineer"))
    assert created.status_code == 201, created.text
    url = f"{SCIM}/Users/{created.json()['id']}"
    refused = await scim.patch(url, json={"schemas": [PATCH_SCHEMA], "Operations": [operation]})
    _scim_error(refused, 400, "invalidValue")
    assert (await scim.get(url)).json() == created.json()


async def test_every_operator_compares_ids_and_members_as_their_text(
    scim: httpx.AsyncClient,
) -> None:
    """The contract: every operator on every attribute. `eq` and `ne` compare ids as ids
    (indexed); the others compare their canonical text, case-insensitively (they were
    400 invalidFilter)."""
    ada = (await scim.post(f"{SCIM}/Users", json=new_user("idtext"))).json()
    group = await scim.post(
        f"{SCIM}/Groups", json={"displayName": "Id text", "members": [{"value": ada["id"]}]}
    )
    assert group.status_code == 201, group.text
    head, tail = ada["id"][:23].upper(), ada["id"][-12:]
    for resource, text, expected in (
        ("Users", f'id sw "{head}"', ada["id"]),
        ("Users", f'id ew "{tail}" and userName eq "idtext"', ada["id"]),
        ("Users", f'groups.value co "{group.json()["id"][9:18]}"', ada["id"]),
        ("Groups", f'members.value sw "{head}"', group.json()["id"]),
        ("Groups", f'members[value ew "{tail}"]', group.json()["id"]),
    ):
        found = await scim.get(f"{SCIM}/{resource}", params={"filter": text})
        assert found.status_code == 200, (text, found.text)
        assert [item["id"] for item in found.json()["Resources"]] == [expected], text
    nothing = await scim.get(f"{SCIM}/Users", params={"filter": 'id sw "ffffffff-ffff"'})
    assert nothing.json()["totalResults"] == 0


async def test_a_group_attribute_the_schema_does_not_name_is_400_as_for_a_user(
    scim: httpx.AsyncClient,
) -> None:
    """It was dropped (201), where a User's is refused: the same answer for both now. An
    extension's attributes are still passed over."""
    refused = await scim.post(f"{SCIM}/Groups", json={"displayName": "Odd", "foo": "bar"})
    _scim_error(refused, 400, "invalidValue")
    assert "foo" in refused.json()["detail"]
    extension = "urn:example:params:scim:schemas:extension:acme:2.0:Group"
    kept = await scim.post(f"{SCIM}/Groups", json={"displayName": "Odd", extension: {"x": 1}})
    assert kept.status_code == 201, kept.text
    replaced = await scim.put(
        f"{SCIM}/Groups/{kept.json()['id']}", json={"displayName": "Odd", "bar": 1}
    )
    _scim_error(replaced, 400, "invalidValue")
