"""API tokens: shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_PREFIX = "cv_"
# A token we issue: the prefix and 43 URL-safe characters; anything else is refused before SQL.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,200}$")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None when it is not one."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.match(token):
        return None
    return token
