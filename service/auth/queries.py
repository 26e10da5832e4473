"""SQL for users and API keys."""

from __future__ import annotations

import aiopg

from service.db import Row, Tx, fetchone, transaction

USER_BY_TOKEN = """
SELECT k.id AS token_id, k.last_used_at < now() - interval '1 minute' AS stale_use,
       k.last_used_at IS NULL AS never_used, u.id, u.email, u.is_admin
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.token_hash = %s AND k.revoked_at IS NULL
"""

TOUCH_TOKEN = "UPDATE api_keys SET last_used_at = now() WHERE id = %s"


async def user_by_token_hash(pool: aiopg.Pool, digest: bytes) -> Row | None:
    return await fetchone(pool, USER_BY_TOKEN, (digest,))


async def touch_token(pool: aiopg.Pool, token_id: int) -> None:
    async with transaction(pool) as tx:
        await tx.execute(TOUCH_TOKEN, (token_id,))


async def create_user(tx: Tx, email: str, name: str, is_admin: bool) -> int:
    user_id = await tx.fetchval(
        "INSERT INTO users (email, name, is_admin) VALUES (%s, %s, %s) RETURNING id", (email, name, is_admin)
    )
    return int(user_id)


async def user_id_by_email(tx: Tx, email: str) -> int | None:
    value = await tx.fetchval("SELECT id FROM users WHERE email = %s", (email,))
    return None if value is None else int(value)


async def insert_token(tx: Tx, user_id: int, digest: bytes, label: str) -> int:
    token_id = await tx.fetchval(
        "INSERT INTO api_keys (user_id, token_hash, label) VALUES (%s, %s, %s) RETURNING id",
        (user_id, digest, label),
    )
    return int(token_id)


async def revoke_token(tx: Tx, token_id: int) -> bool:
    count = await tx.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,)
    )
    return count == 1
