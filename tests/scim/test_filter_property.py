"""Any filter the grammar accepts selects, in SQL, exactly the users that the same
predicate, evaluated here in Python on every user as SCIM shows it, selects."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.scim.conftest import SCIM, new_user

USERS = [
    new_user("ada", title="countess", externalId="A-1", name={"formatted": "Ada Lovelace"}),
    new_user("bob", "bob@work.example", active=False, displayName="bobby"),
    new_user(
        "carol",
        emails=[
            {"value": "carol@home.example", "type": "home"},
            {"value": "carol@work.example", "type": "work", "primary": True},
        ],
        title="engineer",
    ),
    new_user("dave", externalId="a-1", name={"givenName": "Dave", "familyName": "Bowman"}),
    new_user("eve", title="", active=False),
    new_user("zed", displayName="Zed"),
]

STRING_ATTRIBUTES = ("userName", "name.formatted", "title", "externalId", "displayName")
WORDS = ("a", "ad", "ada", "bob", "o", "e", "countess", "engineer", "zed", "dave", "l", "x", "A-1")
TEXT_OPS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le")

texts = st.sampled_from(WORDS)
leaves = st.one_of(
    st.builds(
        lambda attr, op, value: f"{attr} {op} {json.dumps(value)}",
        st.sampled_from(STRING_ATTRIBUTES),
        st.sampled_from(TEXT_OPS),
        texts,
    ),
    st.builds(
        lambda op, value: f"emails.value {op} {json.dumps(value)}",
        st.sampled_from(("eq", "ne", "co", "sw", "ew")),
        st.sampled_from(("bob@work.example", "carol", "example", "ada@example.com", "home")),
    ),
    st.builds(
        lambda op, value: f"active {op} {json.dumps(value)}",
        st.sampled_from(("eq", "ne")),
        st.booleans(),
    ),
    st.builds(
        lambda attr: f"{attr} pr", st.sampled_from((*STRING_ATTRIBUTES, "emails", "phoneNumbers"))
    ),
    st.builds(lambda kind: f'emails[type eq "{kind}"]', st.sampled_from(("work", "home", "other"))),
)
filters = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} or {b}", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
        st.builds(lambda a: f"({a})", inner),
    ),
    max_leaves=5,
)


# --- the same predicate, in Python ------------------------------------------------------


def _value(resource: dict[str, Any], attribute: str) -> Any:
    if attribute == "name.formatted":
        return (resource.get("name") or {}).get("formatted")
    return resource.get(attribute)


def _compare(actual: Any, op: str, expected: str, *, case_exact: bool = False) -> bool:
    if not isinstance(actual, str):
        return False
    if not case_exact:
        actual, expected = actual.lower(), expected.lower()
    result: bool = {
        "eq": actual == expected,
        "ne": actual != expected,
        "co": expected in actual,
        "sw": actual.startswith(expected),
        "ew": actual.endswith(expected),
        "gt": actual > expected,
        "ge": actual >= expected,
        "lt": actual < expected,
        "le": actual <= expected,
    }[op]
    return result


def evaluate(node: Any, resource: dict[str, Any]) -> bool:
    """The predicate of a parsed filter on one resource (scim2-models' syntax tree)."""
    from scim2_models.path import Comparison, LogicalExpr, Not, Present, ValuePath

    if isinstance(node, LogicalExpr):
        results = [evaluate(term, resource) for term in node.terms]
        return all(results) if node.op.value == "and" else any(results)
    if isinstance(node, Not):
        return not evaluate(node.expr, resource)
    emails = resource["emails"]
    if isinstance(node, ValuePath):
        kind = node.val_filter.value  # type: ignore[attr-defined]
        return any(str(email.get("type", "")).lower() == kind for email in emails)
    path = str(node.attr_path)
    if isinstance(node, Present):
        if path == "emails":
            return True
        value = _value(resource, path)
        return value not in (None, "", [])
    assert isinstance(node, Comparison)
    if path == "active":
        same = resource["active"] == node.value
        return same if node.op.value == "eq" else not same
    if path == "emails.value":
        if node.op.value == "ne":
            return not any(_email(email, "eq", node.value) for email in emails)
        return any(_email(email, node.op.value, node.value) for email in emails)
    exact = path == "externalId"  # the one case-exact attribute (RFC 7643 3.1)
    return _compare(_value(resource, path), node.op.value, node.value, case_exact=exact)


def _email(email: dict[str, Any], op: str, expected: str) -> bool:
    return _compare(email.get("value"), op, expected)


# --- the property ------------------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=filters)
async def test_any_filter_selects_what_the_same_predicate_selects(
    scim: httpx.AsyncClient, text: str
) -> None:
    from scim2_models.path import ScimFilter

    everyone = (await scim.get(f"{SCIM}/Users")).json()
    if everyone["totalResults"] == 0:
        for body in USERS:
            assert (await scim.post(f"{SCIM}/Users", json=body)).status_code == 201
        everyone = (await scim.get(f"{SCIM}/Users")).json()
    response = await scim.post(f"{SCIM}/Users/.search", json={"filter": text, "count": 1000})
    assert response.status_code == 200, (text, response.text)
    found = sorted(resource["userName"] for resource in response.json()["Resources"])
    assert response.json()["totalResults"] == len(found)
    node = ScimFilter(text).ast
    expected = sorted(
        resource["userName"] for resource in everyone["Resources"] if evaluate(node, resource)
    )
    assert found == expected, text


async def test_filters_the_grammar_refuses_or_the_service_cannot_answer_are_400(
    scim: httpx.AsyncClient,
) -> None:
    for text in ("userName eq", 'nope eq "x"', "active gt true", 'meta.created co "2020"', "((("):
        response = await scim.get(f"{SCIM}/Users", params={"filter": text})
        assert response.status_code == 400, text
        assert response.json()["scimType"] == "invalidFilter", text
