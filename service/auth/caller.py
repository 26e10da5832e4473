"""Who is calling: `Authorization: Bearer <token>` resolved to a user, or 401.

While the events hub listens, a token seen before is answered from memory (service/statuscache):
a revocation, a deleted key or user, or a changed admin flag reaches every web process as a
NOTIFY, and the hub's fence makes sure it is applied before a later request is answered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiopg
from aiohttp import web

from service.auth.queries import touch_token
from service.auth.tokens import bearer_token, token_hash
from service.errors import unauthorized
from service.events.hub import HUB
from service.keys import PG_POOL
from service.statuscache import TokenEntry
from service.statuscache.queries import token_owner

# last_used_at is kept to the minute: one write a minute per token (and web process), not one per request.
TOUCH_SECONDS = 60.0


@dataclass(frozen=True)
class User:
    id: int
    email: str
    is_admin: bool
    token_id: int


async def require_user(request: web.Request) -> User:
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise unauthorized()
    digest = token_hash(token)
    pool = request.app[PG_POOL]
    hub = request.app.get(HUB)
    cache = await hub.synced_cache(request) if hub is not None else None
    if hub is None or cache is None:
        entry = await _load(pool, digest)
    else:
        entry = cache.tokens.get(digest)
        if entry is not None:
            now = time.monotonic()
            if entry.touch_due <= now:
                entry.touch_due = now + TOUCH_SECONDS
                hub.spawn(touch_token(pool, entry.user.token_id))
            return entry.user
        entry = await cache.tokens.load(digest, lambda: _load(pool, digest))
    if entry is None:
        raise unauthorized()
    return entry.user


async def _load(pool: aiopg.Pool, digest: bytes) -> TokenEntry | None:
    row = await token_owner(pool, digest)
    if row is None:
        return None
    idle = row["idle_seconds"]
    if idle is None or idle >= TOUCH_SECONDS:
        await touch_token(pool, row["token_id"])
        idle = 0.0
    user = User(id=row["id"], email=row["email"], is_admin=row["is_admin"], token_id=row["token_id"])
    return TokenEntry(user, time.monotonic() + TOUCH_SECONDS - idle)
