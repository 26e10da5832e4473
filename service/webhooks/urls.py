"""Which webhook URLs may be called: http(s) only, and (unless WEBHOOK_ALLOW_PRIVATE_URLS) only
public addresses, so a webhook cannot be aimed at the service's own network.

The check runs when a webhook is created and again on every delivery: a name may resolve to
another address later. At delivery, `GuardedResolver` is the connector's resolver, so the
addresses that were checked are the very ones connected to (no second, unchecked lookup).
"""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address, IPv6Address, ip_address

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

IPAddress = IPv4Address | IPv6Address
MAX_URL_CHARS = 2048
DNS_TIMEOUT_SECONDS = 5.0
NAT64_PREFIX = 0x0064_FF9B_0000_0000_0000_0000  # 64:ff9b::/96


class RefusedUrl(Exception):
    """A URL that may not be called; the message says why (shown to the API client)."""


def parse_url(value: str) -> URL:
    """The URL if its form is acceptable (scheme, host, no credentials), else RefusedUrl."""
    if len(value) > MAX_URL_CHARS:
        raise RefusedUrl(f"must be at most {MAX_URL_CHARS} characters")
    try:
        url = URL(value)  # also refuses an out-of-range port
        host = url.raw_host
    except (ValueError, UnicodeError):
        raise RefusedUrl("is not a valid URL") from None
    if url.scheme not in ("http", "https"):
        raise RefusedUrl("must be an http:// or https:// URL")
    if not url.is_absolute() or not host:
        raise RefusedUrl("must name a host")
    if "@" in (url.raw_authority or ""):
        raise RefusedUrl("must not contain a user name or password")
    return url


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), which is what it reaches."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if int(address) >> 32 == NAT64_PREFIX:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why this address may not be called, or None when it is a public unicast address."""
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)
    for kind, hit in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if hit:
            return f"{address} is a {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


def check_address(address: IPAddress) -> None:
    reason = refusal(address)
    if reason is not None:
        raise RefusedUrl(f"refused: {reason} (set WEBHOOK_ALLOW_PRIVATE_URLS=true to allow it)")


class GuardedResolver(ThreadedResolver):
    """The system resolver, refusing names that resolve to any non-public address."""

    def __init__(self, allow_private: bool) -> None:
        super().__init__()
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        async with asyncio.timeout(DNS_TIMEOUT_SECONDS):
            results = await super().resolve(host, port, family)
        if not self.allow_private:
            for result in results:
                check_address(ip_address(result["host"]))
        return results


async def check_url(value: str, allow_private: bool) -> URL:
    """Create-time check: the form, and every address the host resolves to now."""
    url = parse_url(value)
    if allow_private:
        return url
    host, port = url.raw_host, url.port
    assert host is not None and url.host is not None and port is not None
    literal = literal_address(url.host)
    if literal is not None:
        check_address(literal)
        return url
    try:
        await GuardedResolver(allow_private=False).resolve(host, port, socket.AF_UNSPEC)
    except (OSError, TimeoutError):
        raise RefusedUrl(f"the host {url.host!r} could not be resolved") from None
    return url
