"""Who is calling: `Authorization: Bearer <token>` resolved to a user, or 401."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from service.auth.queries import touch_token, user_by_token_hash
from service.auth.tokens import bearer_token, token_hash
from service.errors import unauthorized
from service.keys import PG_POOL


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
    pool = request.app[PG_POOL]
    row = await user_by_token_hash(pool, token_hash(token))
    if row is None:
        raise unauthorized()
    if row["never_used"] or row["stale_use"]:
        # last_used_at is kept to the minute: one write a minute per token, not one per request.
        await touch_token(pool, row["token_id"])
    return User(id=row["id"], email=row["email"], is_admin=row["is_admin"], token_id=row["token_id"])
