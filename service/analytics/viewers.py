"""Who is viewing: the app's clock, the view salt, the client's address and the viewer key.

A viewer key is an HMAC-SHA256, keyed by the view salt, of the video id with either the
client's `viewerId` or the client IP and User-Agent. Raw IPs and viewer ids are never stored,
and including the video id makes one viewer's keys unlinkable across videos.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from ipaddress import IPv4Network, IPv6Network, ip_address

import aiopg
from aiohttp import web

from config import Settings
from service.analytics.queries import stored_view_salt

Networks = Sequence[IPv4Network | IPv6Network]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ViewState:
    """Per-app view state. Tests replace `clock` to move time without sleeping."""

    settings: Settings
    clock: Callable[[], datetime] = utc_now
    _salt: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.settings.view_salt is not None:
            self._salt = self.settings.view_salt.get_secret_value().encode()

    async def salt(self, pool: aiopg.Pool) -> bytes:
        """VIEW_SALT, else the salt kept in the database (made on first use, the same for every process)."""
        if self._salt is None:
            self._salt = await stored_view_salt(pool, secrets.token_bytes(32))
        return self._salt


VIEWS = web.AppKey("views", ViewState)


def client_ip(request: web.Request, trusted: Networks) -> str:
    """The peer address, or, when the peer is a trusted proxy, the nearest untrusted X-Forwarded-For hop."""
    peer = request.remote or ""
    if not trusted or not _is_trusted(peer, trusted):
        return _canonical(peer)
    hops = [hop.strip() for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")]
    hops = [hop for hop in hops if hop]
    # Each proxy appends the address it saw: read from the right, skipping our own proxies.
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return _canonical(hop)
    return _canonical(hops[0]) if hops else _canonical(peer)


def _is_trusted(address: str, trusted: Networks) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def _canonical(address: str) -> str:
    try:
        return str(ip_address(address))
    except ValueError:
        return address  # not an address (a unix socket, a garbled header): hashed as it is


def viewer_key(salt: bytes, video_id: str, viewer_id: str | None, ip: str, user_agent: str) -> bytes:
    parts = [video_id, "id", viewer_id] if viewer_id is not None else [video_id, "client", ip, user_agent]
    # JSON keeps the parts apart unambiguously, whatever characters they hold.
    message = json.dumps(parts, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hmac.new(salt, message, hashlib.sha256).digest()
