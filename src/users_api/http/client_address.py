"""The client's address for throttling: X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from starlette.requests import Request

UNKNOWN = "unknown"


def _trusted(address: str, proxies: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        parsed = ip_address(address.strip())
    except ValueError:
        return False
    return any(parsed in network for network in proxies)


def client_address(request: Request, proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """Walk X-Forwarded-For from the right, skipping our own proxies.

    The right-most entry not added by a trusted proxy is the first one a client could
    not forge; entries left of it are whatever the client chose to send.
    """
    peer = request.client.host if request.client else UNKNOWN
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted(hop, proxies):
            try:
                return str(ip_address(hop))
            except ValueError:
                return peer
    return peer
