"""Outbound webhooks: Standard Webhooks signatures, answers, and the address guard."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ipaddress
import socket
from typing import Any

import pytest
from cunzhi_notifications.channels.base import Outcome
from cunzhi_notifications.channels.guard import AddressPolicy, ForbiddenAddress
from cunzhi_notifications.channels.http import retry_after
from cunzhi_notifications.channels.webhook import WebhookChannel
from cunzhi_notifications.fakes import FakeProviders, Fault
from cunzhi_notifications.fakes import sample as message

LOOPBACK = AddressPolicy(["127.0.0.0/8", "::1/128"], allow_public=False)
EVENT = '{"type":"NotificationSent","data":{"forum_id":"forum-18"}}'


def hook(url: str, secret: str) -> Any:
    return message(url, body=EVENT, secret=secret)


async def test_delivery_is_signed_and_verifies_at_the_receiver(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, secret = fakes.webhooks.add_endpoint()
    m = hook(url, secret)
    [result] = await channel.send([m])
    await channel.aclose()
    assert result.outcome is Outcome.SENT
    [delivery] = fakes.webhooks.for_path(url)
    assert delivery.verified
    assert delivery.webhook_id == m.delivery_id
    assert delivery.body == EVENT
    assert delivery.signature.startswith("v1,")


async def test_a_wrong_secret_does_not_verify(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, _ = fakes.webhooks.add_endpoint()
    _, other = fakes.webhooks.add_endpoint()
    await channel.send([hook(url, other)])
    await channel.aclose()
    [delivery] = fakes.webhooks.for_path(url)
    assert not delivery.verified


async def test_410_fails_and_says_the_address_is_gone(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, secret = fakes.webhooks.add_endpoint()
    fakes.webhooks.gone.add(url.removeprefix(fakes.webhooks.url))
    [result] = await channel.send([hook(url, secret)])
    await channel.aclose()
    assert result.outcome is Outcome.FAILED and result.address_gone


async def test_429_and_5xx_retry_honouring_retry_after(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, secret = fakes.webhooks.add_endpoint()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)
    fakes.webhooks.fail(Fault(status=429, headers={"retry-after": "30"}))
    fakes.webhooks.fail(
        Fault(status=503, headers={"retry-after": email.utils.format_datetime(later, usegmt=True)})
    )
    fakes.webhooks.fail(Fault(status=500))
    results = [(await channel.send([hook(url, secret)]))[0] for _ in range(3)]
    await channel.aclose()
    assert [r.outcome for r in results] == [Outcome.RETRY] * 3
    assert results[0].retry_after_s == 30
    assert results[1].retry_after_s is not None and 100 < results[1].retry_after_s <= 120
    assert results[2].retry_after_s is None


async def test_other_4xx_fail(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, secret = fakes.webhooks.add_endpoint()
    fakes.webhooks.fail(Fault(status=400))
    [refused] = await channel.send([hook(url, secret)])
    [unknown] = await channel.send([hook(f"{fakes.webhooks.url}/no/such/hook", secret)])
    await channel.aclose()
    assert refused.outcome is Outcome.FAILED and not refused.address_gone
    assert unknown.outcome is Outcome.FAILED and "404" in (unknown.error or "")


async def test_redirects_are_not_followed(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, secret = fakes.webhooks.add_endpoint()
    target, _ = fakes.webhooks.add_endpoint()
    fakes.webhooks.fail(Fault(status=307, headers={"location": target}))
    [result] = await channel.send([hook(url, secret)])
    await channel.aclose()
    assert result.outcome is Outcome.FAILED and "redirect" in (result.error or "")
    assert not fakes.webhooks.for_path(target)


async def test_timeout_is_unclear_and_refused_connection_is_retry(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK, timeout_s=0.5)
    url, secret = fakes.webhooks.add_endpoint()
    fakes.webhooks.fail(Fault(delay_s=1.5))
    [late] = await channel.send([hook(url, secret)])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [down] = await channel.send([hook(f"http://127.0.0.1:{port}/hook", secret)])
    await channel.aclose()
    assert late.outcome is Outcome.UNCLEAR
    assert down.outcome is Outcome.RETRY


async def test_without_a_secret_nothing_is_sent(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, _ = fakes.webhooks.add_endpoint()
    [result] = await channel.send([message(url, body=EVENT)])
    [bad] = await channel.send([message(url, body=EVENT, secret="whsec_###")])
    await channel.aclose()
    assert result.outcome is Outcome.FAILED and bad.outcome is Outcome.FAILED
    assert not fakes.webhooks.for_path(url)


# -- the address guard ---------------------------------------------------------------------------


GUARD_TABLE = [
    # IPv4: private, loopback, link-local, shared, protocol, documentation, multicast, reserved
    ("0.0.0.0", False),
    ("0.255.255.255", False),
    ("10.1.2.3", False),
    ("100.64.0.1", False),  # carrier-grade NAT
    ("100.127.255.254", False),
    ("127.0.0.1", False),
    ("169.254.169.254", False),  # cloud metadata
    ("172.16.0.1", False),
    ("172.31.255.254", False),
    ("192.0.0.8", False),  # 192.0.0.0/24: is_global says True in some patch releases
    ("192.0.0.9", False),
    ("192.0.0.170", False),
    ("192.0.2.1", False),
    ("192.88.99.1", False),
    ("192.168.1.1", False),
    ("198.18.0.1", False),
    ("198.51.100.7", False),
    ("203.0.113.9", False),
    ("224.0.0.1", False),
    ("239.255.255.250", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    # IPv6 of their own
    ("::", False),
    ("::1", False),
    ("::a00:1", False),  # IPv4-compatible (deprecated)
    ("::ffff:0:a00:1", False),  # IPv4-translated
    ("64:ff9b:1::a00:1", False),  # NAT64 local use
    ("64:ff9b:1::808:808", False),
    ("100::1", False),
    ("2001::1", False),  # Teredo
    ("2001:2::1", False),  # benchmarking
    ("2001:20::1", False),  # ORCHIDv2
    ("2001:db8::1", False),
    ("3fff::1", False),
    ("5f00::1", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("fe80::1", False),
    ("fec0::1", False),  # site-local
    ("feff::1", False),
    ("ff02::1", False),
    ("4000::1", False),  # outside global unicast
    # IPv6 that carries an IPv4 address: judged by it
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:192.0.0.8", False),
    ("::ffff:8.8.8.8", True),
    ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ("2002:808:808::", True),
    ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
    ("64:ff9b::808:808", True),
    # public
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("100.63.255.255", True),
    ("100.128.0.1", True),
    ("172.32.0.1", True),
    ("192.0.3.1", True),
    ("223.255.255.254", True),
    ("2001:4860:4860::8888", True),
    ("2400:3200::1", True),
]


@pytest.mark.parametrize(("address", "allowed"), GUARD_TABLE)
def test_the_guard_judges_every_special_range_by_its_own_table(address: str, allowed: bool):
    """Written out, not ``ipaddress.is_global``: its answers differ between patch releases."""
    assert AddressPolicy().permits(ipaddress.ip_address(address)) is allowed
    assert not AddressPolicy(allow_public=False).permits(ipaddress.ip_address(address))


def test_allow_list_opens_exactly_its_networks():
    policy = AddressPolicy(["10.20.0.0/16", "fd00:20::/32"])
    assert policy.permits(ipaddress.ip_address("10.20.1.5"))
    assert policy.permits(ipaddress.ip_address("fd00:20::7"))
    assert not policy.permits(ipaddress.ip_address("10.21.0.1"))
    assert not policy.permits(ipaddress.ip_address("127.0.0.1"))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "gopher://x/",
        "http://user:pw@example.com/",
        "http:///nohost",
        "http://example.com:99999/",
    ],
)
def test_only_plain_http_urls_pass(url: str):
    with pytest.raises(ForbiddenAddress):
        AddressPolicy().check_url(url)


async def test_loopback_by_name_or_literal_is_refused_by_default(fakes: FakeProviders):
    channel = WebhookChannel(AddressPolicy())
    url, secret = fakes.webhooks.add_endpoint()
    port = url.split(":")[2].split("/")[0]
    results = await channel.send(
        [
            hook(url, secret),
            hook(f"http://localhost:{port}/hooks/x", secret),
            hook(f"http://[::1]:{port}/hooks/x", secret),
        ]
    )
    await channel.aclose()
    assert [r.outcome for r in results] == [Outcome.FAILED] * 3
    assert all("allow list" in (r.error or "") for r in results)
    assert not fakes.webhooks.for_path(url)


async def test_a_host_name_in_the_allow_list_admits_that_host():
    policy = AddressPolicy(["localhost"], allow_public=False)
    assert await policy.refusal("http://localhost:8080/hook") is None
    assert await policy.refusal("http://127.0.0.2:8080/hook") is not None


async def test_rebinding_after_the_check_cannot_reach_a_private_address(
    fakes: FakeProviders, monkeypatch: pytest.MonkeyPatch
):
    """The name answers a public address when checked, loopback when connected: refused."""
    url, secret = fakes.webhooks.add_endpoint()
    port = int(url.split(":")[2].split("/")[0])
    answers = iter(["93.184.216.34", "127.0.0.1"])

    async def rebinding(host: str, port: int, **kw: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding)
    policy = AddressPolicy()
    hooked = f"http://hooks.rebind.example:{port}{url.removeprefix(fakes.webhooks.url)}"
    assert await policy.refusal(hooked) is None  # registration-time check: public
    channel = WebhookChannel(policy)
    [result] = await channel.send([hook(hooked, secret)])
    await channel.aclose()
    assert result.outcome is Outcome.FAILED and "127.0.0.1" in (result.error or "")
    assert not fakes.webhooks.for_path(url)


def test_retry_after_reads_seconds_and_http_dates():
    now = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    assert retry_after("120", now) == 120
    assert retry_after("Mon, 02 Mar 2026 01:01:30 GMT", now) == 90
    assert retry_after("Mon, 02 Mar 2026 00:59:00 GMT", now) == 0
    assert retry_after("soon", now) is None
    assert retry_after("99999999", now) == 24 * 3600


async def test_an_endpoint_down_for_a_while_then_back(fakes: FakeProviders):
    channel = WebhookChannel(LOOPBACK)
    url, secret = fakes.webhooks.add_endpoint()
    fakes.webhooks.fail_always(Fault(status=503))
    down = await channel.send([hook(url, secret), hook(url, secret)])
    fakes.webhooks.heal()
    [up] = await channel.send([hook(url, secret)])
    await channel.aclose()
    assert [r.outcome for r in down] == [Outcome.RETRY, Outcome.RETRY]
    assert up.outcome is Outcome.SENT and len(fakes.webhooks.for_path(url)) == 1
