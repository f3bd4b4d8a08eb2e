"""Schemathesis against /openapi.json: every operation, as an admin and as a plain user.

Operations are collected from the OpenAPI document of an app built without a database
(collection runs before any fixture); every request then goes, in process, to a real
app over the test database, and `test_served_document_is_the_fuzzed_one` checks that
this app serves the very same document at `/openapi.json`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.formats import email_values
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.auth.helpers import register_and_login
from tests.conftest import ADMIN_PASSWORD, Admin, login
from users_api.app import create_app
from users_api.config import Settings

MAX_EXAMPLES = 40
BASE_URL = "http://testserver"
SPEC: dict[str, Any] = create_app(
    Settings(secret_key="only-for-the-openapi-document-" * 2, _env_file=None)
).openapi()

# Statuses a schema-valid request may still get: the schema cannot say that a cursor
# is opaque (400), that an ETag is stale (412), or who exists (404) or is taken (409).
VALID_BUT_REFUSED = ["2xx", "3xx", "400", "401", "403", "404", "409", "412", "429"]
CHECKS = {"positive_data_acceptance": {"expected-statuses": VALID_BUT_REFUSED}}
schema = schemathesis.openapi.from_dict(
    SPEC,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            # The document's examples go in `test_examples_as_admin`: schemathesis runs them
            # only in a test without `given`.
            "phases": {"coverage": {"enabled": False}, "examples": {"enabled": False}},
            "checks": CHECKS,
        }
    ),
)
# The same document, sending the examples it shows (request bodies; what an operation
# shows no example of is generated): each must be accepted, since clients copy them.
examples = schemathesis.openapi.from_dict(
    SPEC,
    config=schemathesis.Config.from_dict(
        {
            "phases": {
                "examples": {"enabled": True, "fill-missing": True},
                "fuzzing": {"enabled": False},
                "coverage": {"enabled": False},
            },
            "checks": CHECKS,
        }
    ),
)
# The email field documents that special-use domains are refused; schemathesis's own
# `email` strategy likes `.test`, which would make valid-looking data a 422.
_SPECIAL_USE = (".test", ".local", ".localhost", ".invalid", ".onion", ".arpa", ".example")
schemathesis.openapi.format(
    "email", email_values().filter(lambda email: not email.lower().endswith(_SPECIAL_USE))
)
# A password also has to be hard to guess (zxcvbn's estimate, which a schema cannot
# state): valid data starts with twelve characters no dictionary or pattern explains.
schemathesis.openapi.format(
    "password",
    st.text(max_size=116).map(lambda tail: "Kq7!vRe2#pLm" + tail),
)
# A webhook URL must also reach a public address (which a schema cannot state): valid
# data names a host under `.invalid` (RFC 6761), which never resolves, so registration
# takes it (a name is checked again when sent) and nothing is ever sent anywhere.
schemathesis.openapi.format(
    "uri", st.from_regex(r"https://[a-z]{1,20}\.invalid(/[a-z0-9]{0,20}){0,3}", fullmatch=True)
)

# The signed-in callers are made once per operation, not per example, on purpose: an
# example that deletes a user or logs out shows what the next ones then get.
FUZZ_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

STATS: Counter[str] = Counter()
FuzzCase = schemathesis.Case[Any]


class Counting:
    """Count every request the fuzzer sends and every 5xx the app answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        STATS["requests"] += 1

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 500:
                STATS["5xx"] += 1
            await send(message)

        await self.app(scope, receive, counting_send)


@pytest.fixture(scope="module")
def fuzz_app(settings: Settings) -> Iterator[Counting]:
    # Its own app: schemathesis serves it on its own event loop (a thread), where the
    # session app's pooled connections cannot follow.
    app = Counting(create_app(settings))
    yield app
    schemathesis_asgi.shutdown_lifespans()
    print(f"\nschemathesis: {STATS['requests']} requests, {STATS['5xx']} answered 5xx")
    assert STATS["5xx"] == 0


@dataclass(frozen=True)
class Caller:
    token: str
    known_ids: tuple[str, ...]


@pytest.fixture
async def callers(client: httpx.AsyncClient, admin: Admin) -> dict[str, Caller]:
    """An admin and a plain user, signed in, and their ids for the fuzzer to aim at."""
    plain, plain_tokens = await register_and_login(client, "plain")
    admin_tokens = await login(client, admin.username, ADMIN_PASSWORD)
    ids = (str(admin.id), plain["id"])
    return {
        "admin": Caller(admin_tokens["access_token"], ids),
        "user": Caller(plain_tokens["access_token"], ids),
    }


def _run(case: FuzzCase, data: Any, caller: Caller, app: Counting) -> None:
    # Random UUIDs only ever meet 404: aim half of the examples at users that exist.
    if "user_id" in (case.path_parameters or {}) and data.draw(st.booleans()):
        case.path_parameters["user_id"] = data.draw(st.sampled_from(caller.known_ids))
    case.call_and_validate(
        base_url=BASE_URL, app=app, headers={"Authorization": f"Bearer {caller.token}"}
    )


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ_SETTINGS
def test_as_admin(
    case: FuzzCase, data: Any, callers: dict[str, Caller], fuzz_app: Counting
) -> None:
    _run(case, data, callers["admin"], fuzz_app)


@schema.parametrize()
@schema.given(data=st.data())
@FUZZ_SETTINGS
def test_as_user(case: FuzzCase, data: Any, callers: dict[str, Caller], fuzz_app: Counting) -> None:
    _run(case, data, callers["user"], fuzz_app)


@examples.parametrize()
@FUZZ_SETTINGS
def test_examples_as_admin(case: FuzzCase, callers: dict[str, Caller], fuzz_app: Counting) -> None:
    token = callers["admin"].token
    case.call_and_validate(
        base_url=BASE_URL, app=fuzz_app, headers={"Authorization": f"Bearer {token}"}
    )


async def test_served_document_is_the_fuzzed_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == SPEC
