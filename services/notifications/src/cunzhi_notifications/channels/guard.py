"""Where outbound webhooks may connect (no SSRF into the county's network).

A subscriber's URL is someone else's input. Only http(s); the host is resolved and every
address checked: public addresses pass (unless the operator turns that off), private,
loopback, link-local, shared, reserved, documentation and multicast ones (``SPECIAL``, the
IANA special-purpose registries written out here, not ``ipaddress.is_global``, whose answer
changed between Python patch releases) only where the operator's allow list names them
(``10.20.0.0/16``, ``::1/128``, or a host name, which admits that host whatever it resolves
to). The check runs *inside* the connection: the network backend
resolves, checks and connects to the very address it checked, so a DNS answer that changes
between a check and the connection (rebinding) cannot slip through. Redirects are never
followed (the webhook client does not follow them at all).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Iterable
from typing import Any

import httpcore

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
SPECIAL: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the limited broadcast 255.255.255.255
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # NAT64 local use
        "100::/64",  # discard only
        "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID…
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing (SRv6) SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
"""Never a public host. IPv4-mapped (``::ffff:0:0/96``), 6to4 (``2002::/16``) and NAT64
(``64:ff9b::/96``) addresses are judged by the IPv4 address they carry; other IPv6 addresses
must be global unicast (``2000::/3``) besides."""
HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_-]{1,63}$")


def carried_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), else itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def public(address: IPAddress) -> bool:
    """Outside every special range (``SPECIAL``); for IPv6, also global unicast. Addresses that
    carry an IPv4 address are judged by it (``carried_ipv4``) before they come here."""
    if isinstance(address, ipaddress.IPv6Address) and address not in GLOBAL_UNICAST_V6:
        return False
    return not any(address in network for network in SPECIAL)


class ForbiddenAddress(Exception):
    """The URL or the address it resolves to is outside what the operator allows."""


class AddressPolicy:
    """The operator's allow list (``CUNZHI_WEBHOOK_ALLOW``) and whether public hosts pass."""

    def __init__(self, allow: Iterable[str] = (), *, allow_public: bool = True) -> None:
        self.networks: list[IPNetwork] = []
        self.hosts: set[str] = set()
        for entry in (e.strip().lower().rstrip(".") for e in allow):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or not HOST_NAME.match(entry):
                raise ValueError(f"{entry!r} is neither a CIDR nor a host name")
            self.hosts.add(entry)
        self.allow_public = allow_public

    def __repr__(self) -> str:
        allowed = [str(n) for n in self.networks] + sorted(self.hosts)
        return f"AddressPolicy(allow={allowed}, allow_public={self.allow_public})"

    def permits(self, address: IPAddress) -> bool:
        if any(address in network for network in self.networks):
            return True
        # ::ffff:10.0.0.1, 2002:a00:1:: and 64:ff9b::a00:1 all lead to 10.0.0.1.
        carried = carried_ipv4(address)
        if carried != address and any(carried in network for network in self.networks):
            return True
        return self.allow_public and public(carried)

    def check_url(self, url: str) -> tuple[str, str, int]:
        """Scheme, host and port of a URL the policy could allow; ForbiddenAddress if not."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ForbiddenAddress(f"not a URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ForbiddenAddress(f"only http and https URLs are allowed, not {parts.scheme!r}")
        if not parts.hostname:
            raise ForbiddenAddress("the URL has no host")
        if parts.username or parts.password:
            raise ForbiddenAddress("credentials in the URL are not allowed")
        return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` this policy allows, in resolver order; ForbiddenAddress."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            candidates = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            candidates = []
            for *_, sockaddr in infos:
                address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
                if address not in candidates:
                    candidates.append(address)
        if literal is None and host.lower().rstrip(".") in self.hosts:
            return [str(a) for a in candidates]
        allowed = [str(a) for a in candidates if self.permits(a)]
        if not allowed:
            shown = ", ".join(str(a) for a in candidates) or "nothing"
            raise ForbiddenAddress(
                f"{host} resolves to {shown}, which the webhook allow list does not admit "
                "(CUNZHI_WEBHOOK_ALLOW)"
            )
        return allowed

    async def refusal(self, url: str) -> str | None:
        """Why this URL may not be used, in words, or None (for checks at registration)."""
        try:
            _, host, port = self.check_url(url)
            await self.resolve(host, port)
        except (ForbiddenAddress, httpcore.ConnectError) as exc:
            return str(exc)
        return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.policy.resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        last: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenAddress("webhooks never connect to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
