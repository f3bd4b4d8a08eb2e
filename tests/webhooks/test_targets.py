"""The SSRF rule alone: which addresses are public, and how a checked target is reached."""

from __future__ import annotations

from ipaddress import ip_address

import httpx
import pytest
from fastapi import FastAPI

from tests.webhooks.conftest import emit, eventually
from tests.webhooks.receiver import Receiver
from users_api.webhooks.targets import RefusedTarget, check_url, is_public, resolve


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.31.255.255", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),  # the cloud metadata service
        ("100.64.0.1", False),  # CGNAT
        ("0.0.0.0", False),  # noqa: S104  # an address to judge, not to bind
        ("224.0.0.251", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("fd00:ec2::254", False),  # AWS's IPv6 metadata service
        ("fe80::1", False),
        ("::ffff:169.254.169.254", False),  # IPv4-mapped
        ("2002:a00:1::", False),  # 6to4 of 10.0.0.1
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ],
)
def test_what_is_public(address: str, public: bool) -> None:
    assert is_public(ip_address(address)) is public


async def test_a_name_is_resolved_and_every_address_checked() -> None:
    with pytest.raises(RefusedTarget, match="not a public host"):
        await resolve("http://localhost:9/", allow_private=False)
    target = await resolve("http://localhost:9/a/b?c=d", allow_private=True)
    assert all(address.is_loopback for address in target.addresses)
    assert target.request_url(ip_address("127.0.0.1")) == "http://127.0.0.1:9/a/b?c=d"
    assert target.request_url(ip_address("::1")) == "http://[::1]:9/a/b?c=d"
    assert target.host_header() == "localhost:9"
    v6 = await resolve("https://[2606:4700:4700::1111]/x", allow_private=False)
    assert v6.request_url(v6.addresses[0]) == "https://[2606:4700:4700::1111]:443/x"
    assert v6.host_header() == "[2606:4700:4700::1111]"


async def test_the_request_goes_to_the_checked_address_with_the_name_as_host(
    app: FastAPI, admin_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    response = await admin_client.post(
        "/api/v1/webhooks",
        json={"url": f"http://localhost:{receiver.port}/named", "events": ["*"]},
    )
    assert response.status_code == 201, response.text
    receiver.secret = response.json()["secret"]
    await emit(app)
    await eventually(lambda: len(receiver.delivered()) == 1)
    [received] = receiver.all()
    assert received.headers["host"] == f"localhost:{receiver.port}"
    assert received.verified


# What a URL may not hold, wherever it points: urlsplit drops CR, LF and tab and strips
# leading spaces, so the URL stored would not be the URL sent.
UNREADABLE_URLS = [
    "https://8.8.8.8/hook\r\nX-Injected: 1",
    "https://8.8.8.8/ho\nok",
    "https://8.8.8.8/ho\tok",
    "https://8.8.8.8/ho\x00ok",
    "https://8.8.8.8/ho\x1bok",
    "https://8.8.8.8/ho\x7fok",
    "https://8.8.8.8/ho\x85ok",  # C1 next line
    "https://8.8.8.8/ho ok",
    " https://8.8.8.8/hook",
    "https://8.8.8.8/hook ",
    "https://8.8.8.8/ho\u00a0ok",  # no-break space
    "https://8.8.8.8/ho\u2028ok",  # line separator
    "https://8.8.8.8/ho\u202eok",  # right-to-left override
    "https://8.8.8.8/ho\u200bok",  # zero-width space
]


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("url", UNREADABLE_URLS)
def test_spaces_and_control_characters_are_refused(url: str, allow_private: bool) -> None:
    with pytest.raises(RefusedTarget, match="spaces or control characters"):
        check_url(url, allow_private=allow_private)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://user:pass@8.8.8.8/hook", "credentials"),
        ("https://token@8.8.8.8/hook", "credentials"),
        ("https://8.8.8.8/hook#x", "fragment"),
    ],
)
def test_credentials_and_fragments_are_refused(url: str, why: str) -> None:
    """Credentials would be stored and sent with every event; a fragment is never sent."""
    for allow_private in (False, True):
        with pytest.raises(RefusedTarget, match=why):
            check_url(url, allow_private=allow_private)


def test_an_encoded_space_and_a_non_ascii_name_are_fine() -> None:
    check_url("https://8.8.8.8/a%20b?c=d%0A", allow_private=False)
    check_url("https://bücher.example/hook", allow_private=False)
