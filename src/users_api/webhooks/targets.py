"""The one rule of where a webhook may be sent (SSRF), at registration and at send time.

A URL must be `http://` or `https://`, with a host, no credentials (they would be stored
and sent with every event), no fragment (never sent), and no space or control character
(encoded as `%20`, `%0A` they are fine). Its host must be,
or resolve only to, public addresses: loopback, private, link-local (which holds the
cloud metadata service, 169.254.169.254), CGNAT, multicast, reserved and unspecified
addresses are refused, and so are names of metadata services, unless
WEBHOOK_ALLOW_PRIVATE=true. At send time the name is resolved again and the request
goes to an address that was checked (`Target.addresses`), with the name only in
`Host` and in TLS's SNI, so a name that resolves differently a second later (DNS
rebinding) cannot move the request to another host.
"""

from __future__ import annotations

import asyncio
import socket
import unicodedata
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from urllib.parse import SplitResult, urlsplit

MAX_URL_LENGTH = 2048
# Names that are the metadata service wherever they resolve (GCP, Alibaba, Azure's DNS).
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


_NAT64 = ip_network("64:ff9b::/96")


class RefusedTarget(ValueError):
    """The URL is no place a webhook may be sent to; the message says why."""


class Unresolvable(RefusedTarget):
    """The URL's host does not resolve (now: at registration, that is no refusal)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one attempt goes: the checked addresses (tried in turn), and the URL's parts
    around them."""

    url: str
    host: str  # as written in the URL (the name, for Host and SNI)
    addresses: tuple[IPv4Address | IPv6Address, ...]
    port: int

    def request_url(self, address: IPv4Address | IPv6Address) -> str:
        """The URL with a checked address in place of the name."""
        parts = urlsplit(self.url)
        literal = f"[{address}]" if address.version == 6 else str(address)
        return parts._replace(netloc=f"{literal}:{self.port}").geturl()

    def host_header(self) -> str:
        parts = urlsplit(self.url)
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if parts.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


# Control (C0, DEL, C1), format (bidi overrides, zero-width) and surrogate code points.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})


def _unsafe(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in _INVISIBLE


def _parts(url: str) -> SplitResult:
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    # urlsplit silently drops CR, LF and tab and strips leading spaces: the URL stored
    # would not be the URL sent, and a raw CR LF has no place in a request line.
    if any(_unsafe(char) for char in url):
        raise RefusedTarget(
            "The URL must not hold spaces or control characters (percent-encode them)."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        raise RefusedTarget("The URL cannot be read.") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedTarget("The URL must start with https:// or http://.")
    if not parts.hostname:
        raise RefusedTarget("The URL must name a host.")
    if parts.username is not None or parts.password is not None:
        raise RefusedTarget("The URL must not hold credentials.")
    if parts.fragment:
        raise RefusedTarget("The URL must not have a #fragment.")
    return parts


def _literal(host: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


def is_public(address: IPv4Address | IPv6Address) -> bool:
    """Whether `address` is on the public internet: not loopback, private, link-local,
    CGNAT (100.64/10), multicast, reserved or unspecified; an IPv4-mapped or NAT64 IPv6
    address is judged by the IPv4 address it carries."""
    if isinstance(address, IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if address in _NAT64:
            mapped = IPv4Address(int(address) & 0xFFFFFFFF)
        if mapped is not None:
            return is_public(mapped)
    return address.is_global and not address.is_multicast


def _check(host: str, address: IPv4Address | IPv6Address, allow_private: bool) -> None:
    if not allow_private and not is_public(address):
        raise RefusedTarget(
            f"{host} is, or resolves to, a non-public address ({address}); webhooks go "
            "only to public addresses (WEBHOOK_ALLOW_PRIVATE)."
        )


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse a URL that can never be a target, without resolving it (registration)."""
    parts = _parts(url)
    host = parts.hostname or ""
    if allow_private:
        return
    literal = _literal(host)
    if literal is not None:
        _check(host, literal, allow_private)
    elif (
        host.rstrip(".") in _METADATA_NAMES
        or host.rstrip(".").endswith(".localhost")
        or (host.rstrip(".") == "localhost")
    ):
        raise RefusedTarget(f"{host} is not a public host.")


async def resolve(url: str, *, allow_private: bool) -> Target:
    """The addresses to send to: the URL's host resolved now, every address it resolves
    to checked (one refused address refuses the URL, as a name that mixes public and
    private addresses is no public target)."""
    check_url(url, allow_private=allow_private)
    parts = _parts(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Unresolvable(f"{host} does not resolve: {exc}") from None
        # Each once, in the resolver's order of preference.
        found_addresses = (ip_address(str(info[4][0]).split("%", 1)[0]) for info in found)
        addresses = list(dict.fromkeys(found_addresses))
        if not addresses:
            raise Unresolvable(f"{host} does not resolve.")
    for address in addresses:
        _check(host, address, allow_private)
    return Target(url=url, host=host, addresses=tuple(addresses), port=port)
