"""`/scim/v2`, built at its first request.

The SCIM app stands on scim2-models and its filter grammar: ~6 MiB of every worker's
memory. A deployment that provisions through SCIM pays it once, on the first
provisioning request (a fraction of a second); one that never does pays nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


class ScimMount:
    """The ASGI app mounted at `/scim/v2`: `scim.routes.build(state)` on first use."""

    def __init__(self, state: Any) -> None:
        self._state = state
        self._app: ASGIApp | None = None
        self._built_on: object = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Built again when the app has started again (a new database handle): the SCIM
        # services hold the handle of the start-up they were made after.
        db = getattr(self._state, "db", None)
        if self._app is None or self._built_on is not db:
            from users_api.scim.routes import build

            self._app, self._built_on = build(self._state), db
        await self._app(scope, receive, send)
