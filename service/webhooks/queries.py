"""SQL of the webhook routes. Every query is scoped to the owner: another's webhook is not found."""

from __future__ import annotations

import aiopg

from service.db import Row, connection, transaction

MAX_WEBHOOKS_PER_USER = 20
WEBHOOK_COLUMNS = "id, url, events, created_at, disabled_at, disabled_reason"


async def insert_webhook(pool: aiopg.Pool, owner_id: int, url: str, events: list[str], secret: str) -> Row | None:
    """The new webhook, or None when the owner already has MAX_WEBHOOKS_PER_USER of them."""
    async with transaction(pool) as tx:
        # The owner's row lock serializes their creates, so the count below cannot be raced past.
        await tx.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (owner_id,))
        return await tx.fetchone(
            f"""
            INSERT INTO webhooks (owner_id, url, events, secret)
            SELECT %(owner)s, %(url)s, %(events)s, %(secret)s
             WHERE (SELECT count(*) FROM webhooks WHERE owner_id = %(owner)s) < %(max)s
            RETURNING {WEBHOOK_COLUMNS}
            """,
            {"owner": owner_id, "url": url, "events": events, "secret": secret, "max": MAX_WEBHOOKS_PER_USER},
        )


async def owner_webhooks(pool: aiopg.Pool, owner_id: int) -> list[Row]:
    async with connection(pool) as tx:
        return await tx.fetchall(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE owner_id = %s ORDER BY id", (owner_id,)
        )


async def delete_webhook(pool: aiopg.Pool, webhook_id: int, owner_id: int) -> bool:
    """Delete the owner's webhook with its delivery log; a job for one of them finds nothing to send."""
    async with connection(pool) as tx:
        deleted = await tx.execute("DELETE FROM webhooks WHERE id = %s AND owner_id = %s", (webhook_id, owner_id))
    return deleted == 1


async def owner_deliveries(
    pool: aiopg.Pool, owner_id: int, webhook_id: int | None, limit: int, before: int | None
) -> list[Row] | None:
    """Up to `limit` deliveries older than the id `before`, newest first; None when `webhook_id`
    is not one of the owner's webhooks."""
    async with connection(pool) as tx:
        if webhook_id is not None and await tx.fetchone(
            "SELECT 1 FROM webhooks WHERE id = %s AND owner_id = %s", (webhook_id, owner_id)
        ) is None:
            return None
        return await tx.fetchall(
            """
            SELECT id, webhook_id, event_id, event_type, video_id, status, attempts, last_status_code, last_error,
                   created_at, first_attempt_at, last_attempt_at, finished_at,
                   CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at
              FROM webhook_deliveries
             WHERE owner_id = %(owner)s
               AND (%(webhook)s::bigint IS NULL OR webhook_id = %(webhook)s)
               AND (%(before)s::bigint IS NULL OR id < %(before)s)
             ORDER BY id DESC LIMIT %(limit)s
            """,
            {"owner": owner_id, "webhook": webhook_id, "before": before, "limit": limit},
        )
