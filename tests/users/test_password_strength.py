"""zxcvbn's estimate in the password policy (issue 13, item 8): score 3 or more, with the
email and username as user inputs, and its feedback in the 422."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import asgi_client
from tests.users.helpers import USERS, assert_validation_problem, create_user, user_url
from users_api.security import strength

WEAK = [
    "password1234",
    "123456789012",
    "qwertyuiopas",
    "aaaaaaaaaaaa",
    " " * 12,
    "hunter2hunter2",
    "Ada@Example.com2",  # the email, and a digit
]


def _strength_error(response: httpx.Response) -> dict[str, Any]:
    errors = assert_validation_problem(response, "password")
    assert len(errors) == 1, errors
    error = errors[0]
    assert error["loc"] == ["body", "password"]
    assert "too easy to guess" in error["msg"], error
    feedback = error["ctx"]
    assert set(feedback) == {"score", "warning", "suggestions"}
    assert 0 <= feedback["score"] < 3
    assert isinstance(feedback["warning"], str)
    assert feedback["suggestions"], feedback  # zxcvbn always suggests something below 3
    assert all(isinstance(text, str) and text for text in feedback["suggestions"])
    for text in filter(None, [feedback["warning"], *feedback["suggestions"]]):
        assert text in error["msg"]
    return error


@pytest.mark.parametrize("password", WEAK)
async def test_a_weak_password_is_422_with_zxcvbn_feedback(app: Any, password: str) -> None:
    async with asgi_client(app) as anonymous:
        response = await anonymous.post(
            USERS, json={"email": "ada@example.com", "username": "ada", "password": password}
        )
    error = _strength_error(response)
    assert password.strip() not in error["msg"] or not password.strip()


async def test_the_contract_s_examples_get_zxcvbn_s_own_words(client: httpx.AsyncClient) -> None:
    response = await client.post(
        USERS, json={"email": "ada@example.com", "username": "ada", "password": "password1234"}
    )
    feedback = _strength_error(response)["ctx"]
    assert feedback == {
        "score": 1,
        "warning": "This is a very common password.",
        "suggestions": ["Add another word or two. Uncommon words are better."],
    }


async def test_the_email_and_username_count_as_guessable_words(client: httpx.AsyncClient) -> None:
    """`zqxwvkjhpt2024!` is strong for anyone but the user named `zqxwvkjhpt`, and
    `qz7@zxexample.com!` for anyone but the owner of that address."""
    refused = await client.post(
        USERS,
        json={"email": "zq@example.com", "username": "zqxwvkjhpt", "password": "zqxwvkjhpt2024!"},
    )
    _strength_error(refused)
    by_email = await client.post(
        USERS,
        json={"email": "qz7@zxexample.com", "username": "qz7", "password": "qz7@zxexample.com!"},
    )
    _strength_error(by_email)
    await create_user(client, "someone", password="zqxwvkjhpt2024!")
    await create_user(client, "another", password="qz7@zxexample.com!")


async def test_a_weak_new_password_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    user = await create_user(client, "ada")
    response = await client.patch(user_url(user["id"]), json={"password": "qwertyuiopas"})
    _strength_error(response)
    assert (await client.get(user_url(user["id"]))).json()["version"] == user["version"]


@pytest.mark.parametrize(
    "password",
    [
        "Kq7!vRe2#pLm",  # 12 characters, random
        "correct horse battery staple",
        "  spaced out, \u00fcn\u00efc\u00f8d\u00e9 \u2713 password  ",
        # Long: only the first 32 characters are rated, and they are strong.
        "Kq7!vRe2#pLm correct horse staple" + "a" * 90,
    ],
)
async def test_strong_passwords_are_accepted(client: httpx.AsyncClient, password: str) -> None:
    await create_user(client, "ada", password=password)


async def test_a_long_password_is_rated_on_its_beginning(client: httpx.AsyncClient) -> None:
    """zxcvbn is quadratic in the length: it rates the first 32 characters."""
    strong_after_32 = "a" * 32 + "Kq7!vRe2#pLm correct horse staple"
    response = await client.post(
        USERS, json={"email": "ada@example.com", "username": "ada", "password": strong_after_32}
    )
    _strength_error(response)


def test_the_estimate_s_cost_is_bounded() -> None:
    """Look-alike symbols made zxcvbn try hundreds of l33t readings (1.7 s for 32
    characters, seconds for 128): at most 100 readings of the first 32 characters.
    (Checked by what is tried, not by a clock: timing is the benchmark's job.)"""
    worst = "%1+[<!47[<{(%3!!(580@2%+9|06$$7@" * 4
    strength.load()
    strength.estimate(worst, user_inputs=("ada@example.com", "ada"))
    from zxcvbn import matching

    table = matching.relevant_l33t_subtable(worst, matching.L33T_TABLE)
    assert len(matching.enumerate_l33t_subs(table)) == strength.L33T_SUBSTITUTIONS


async def test_the_estimate_runs_on_a_thread_of_its_own(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not on the event loop: zxcvbn holds the GIL for milliseconds."""
    seen: list[str] = []
    real = strength.estimate

    def spy(password: str, *, user_inputs: Any) -> strength.Estimate:
        seen.append(threading.current_thread().name)
        return real(password, user_inputs=user_inputs)

    monkeypatch.setattr(strength, "estimate", spy)
    await create_user(client, "ada")
    assert len(seen) == 1
    assert seen[0].startswith("zxcvbn")
    assert seen[0] != threading.current_thread().name


_PIECES = st.one_of(
    st.sampled_from(["password", "dragon", "smith", "love", "qwerty", "ÉCOLE", "p@ssw0rd", "ada"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCZ0123456789@!$-_ .éß|", max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=6), inputs=st.lists(st.text(max_size=12), max_size=2))
def test_the_fast_dictionary_match_finds_what_zxcvbn_s_own_finds(
    pieces: list[str], inputs: list[str]
) -> None:
    """The estimate looks substrings up through one bitmap over all lists first
    (`strength.any_word`): the matches, their order and their ranks are zxcvbn's own."""
    strength.load()
    from zxcvbn import matching

    password = "".join(pieces)[: strength.ESTIMATED_LENGTH]
    dictionaries = {
        **matching.RANKED_DICTIONARIES,
        "user_inputs": matching.build_ranked_dict([text.lower() for text in inputs]),
    }
    own = matching.dictionary_match.zxcvbn_own
    assert matching.dictionary_match(password, dictionaries) == own(password, dictionaries)
    assert matching.dictionary_match(password) == own(password)
