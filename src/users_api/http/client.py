"""The client of the write request being served, for what records it (audit events).

Set by the routes that change state (`routing.RequestRoute`, decided once per route when
it is built), never by reads: a GET pays nothing for it. Holds the ASGI scope rather than
an address, so the address is worked out only when something is recorded, and after
`TRUSTED_PROXIES` has put the forwarded client into the scope.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from ipaddress import ip_address

from starlette.types import Scope

CLIENT_SCOPE: ContextVar[Scope | None] = ContextVar("client_scope", default=None)

UNKNOWN_ADDRESS = "unknown"


def address_of(client: tuple[str, int] | None) -> str:
    """The client's IP address, written canonically; `unknown` when there is none, or
    when a proxy forwarded something else than an address (a name, garbage)."""
    if client is None:
        return UNKNOWN_ADDRESS
    return _canonical(client[0])


@lru_cache(maxsize=4096)
def _canonical(host: str) -> str:
    """A few clients send most requests: each address is parsed once (~4 µs a time)."""
    try:
        return str(ip_address(host))
    except ValueError:
        return UNKNOWN_ADDRESS


def current_address() -> str | None:
    """The address of the write request being served; None outside one (CLI, start-up,
    background tasks)."""
    scope = CLIENT_SCOPE.get()
    if scope is None:
        return None
    return address_of(scope.get("client"))
