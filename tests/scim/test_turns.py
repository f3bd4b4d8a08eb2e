"""How one worker's SCIM PATCH outlasts another worker that keeps storing first."""

from __future__ import annotations

import uuid

import pytest

from users_api.errors import PreconditionFailed
from users_api.scim.turns import Turns


async def test_a_patch_outlasts_a_long_run_of_lost_rounds() -> None:
    """Another worker draining a queue of PATCHes of one group wins many rounds in a row
    (24 here, as Entra's member adds split over two workers can); the PATCH that keeps
    losing still lands, with no 412 its client did not ask for."""
    tries = 0

    async def store() -> str:
        nonlocal tries
        tries += 1
        if tries <= 24:
            raise PreconditionFailed
        return "stored"

    assert await Turns().patched(uuid.uuid4(), None, store) == "stored"
    assert tries == 25


async def test_a_patch_with_if_match_gets_its_412_at_once() -> None:
    tries = 0

    async def store() -> str:
        nonlocal tries
        tries += 1
        raise PreconditionFailed

    with pytest.raises(PreconditionFailed):
        await Turns().patched(uuid.uuid4(), frozenset({3}), store)
    assert tries == 1
