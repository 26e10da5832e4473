"""SQL of webhook deliveries: claim an attempt, record how it ended (guarded on the attempt), and
re-request deliveries whose job was lost."""

from __future__ import annotations

from service.db import Row, Tx

# A job's early arrival (clocks of worker and database a little apart) still counts as due.
DUE_TOLERANCE_SECONDS = 5
ATTEMPT = "id = %(id)s AND attempts = %(attempt)s AND status = 'pending'"
MAX_ERROR_CHARS = 500


def clean(text: str | None) -> str | None:
    # Postgres text refuses NUL, and a receiver's body may contain anything.
    return None if text is None else text.replace("\x00", "")[:MAX_ERROR_CHARS]


async def claim(tx: Tx, delivery_id: int, lease_seconds: float) -> Row | None:
    """Start an attempt: a pending, due delivery of an enabled webhook that no attempt holds."""
    return await tx.fetchone(
        """
        UPDATE webhook_deliveries d
           SET attempts = d.attempts + 1, lease_until = now() + %(lease)s * interval '1 second',
               first_attempt_at = coalesce(d.first_attempt_at, now()), last_attempt_at = now()
          FROM webhooks w
         WHERE d.id = %(id)s AND w.id = d.webhook_id AND w.disabled_at IS NULL AND d.status = 'pending'
           AND (d.lease_until IS NULL OR d.lease_until < now())
           AND d.next_attempt_at <= now() + %(tolerance)s * interval '1 second'
        RETURNING d.id, d.webhook_id, d.video_id, d.event_id, d.event_type, d.payload, d.attempts,
                  w.url, w.secret
        """,
        {"id": delivery_id, "lease": lease_seconds, "tolerance": DUE_TOLERANCE_SECONDS},
    )


async def release(tx: Tx, delivery_id: int, attempt: int) -> None:
    """Hand an interrupted attempt back, so the re-run of its job can claim it at once."""
    await tx.execute(
        f"UPDATE webhook_deliveries SET lease_until = NULL WHERE {ATTEMPT}", {"id": delivery_id, "attempt": attempt}
    )


async def delivered(tx: Tx, delivery_id: int, attempt: int, status_code: int) -> bool:
    count = await tx.execute(
        f"""
        UPDATE webhook_deliveries
           SET status = 'delivered', last_status_code = %(code)s, last_error = NULL, lease_until = NULL,
               finished_at = now()
         WHERE {ATTEMPT}
        """,
        {"id": delivery_id, "attempt": attempt, "code": status_code},
    )
    return count == 1


async def failed_attempt(
    tx: Tx, delivery_id: int, attempt: int, status_code: int | None, error: str | None, delay: float, window: float
) -> str | None:
    """Record a failed attempt: 'pending' when the next one (after `delay`) is still within `window`
    of the first attempt, else 'failed'. None when the attempt no longer holds the delivery."""
    return await tx.fetchval(
        f"""
        UPDATE webhook_deliveries
           SET last_status_code = %(code)s, last_error = %(error)s, lease_until = NULL,
               next_attempt_at = now() + %(delay)s * interval '1 second',
               status = CASE WHEN now() + %(delay)s * interval '1 second'
                                  > first_attempt_at + %(window)s * interval '1 second'
                             THEN 'failed' ELSE 'pending' END,
               finished_at = CASE WHEN now() + %(delay)s * interval '1 second'
                                       > first_attempt_at + %(window)s * interval '1 second'
                                  THEN now() END
         WHERE {ATTEMPT}
        RETURNING status
        """,
        {"id": delivery_id, "attempt": attempt, "code": status_code, "error": clean(error), "delay": delay,
         "window": window},
    )


async def gone(tx: Tx, delivery_id: int, attempt: int, webhook_id: int, reason: str) -> bool:
    """The receiver answered 410 Gone: this delivery failed, the webhook is disabled, and its
    other pending deliveries are cancelled (an attempt in flight finds its delivery cancelled)."""
    count = await tx.execute(
        f"""
        UPDATE webhook_deliveries
           SET status = 'failed', last_status_code = 410, last_error = %(reason)s, lease_until = NULL,
               finished_at = now()
         WHERE {ATTEMPT}
        """,
        {"id": delivery_id, "attempt": attempt, "reason": reason},
    )
    if count != 1:
        return False
    await tx.execute(
        "UPDATE webhooks SET disabled_at = now(), disabled_reason = %s WHERE id = %s AND disabled_at IS NULL",
        (reason, webhook_id),
    )
    await tx.execute(
        """
        UPDATE webhook_deliveries
           SET status = 'cancelled', lease_until = NULL, finished_at = now(), last_error = 'the webhook was disabled'
         WHERE webhook_id = %s AND status = 'pending'
        """,
        (webhook_id,),
    )
    return True


# Pending deliveries overdue by `grace` and not held by a live attempt: their job was lost (Redis
# lost its queue, a delete removed the unsent request) or its worker died. Marked due now, so the
# next sweep waits another `grace` before asking again.
STALE_DELIVERIES = """
UPDATE webhook_deliveries SET next_attempt_at = now()
WHERE id IN (SELECT id FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at < now() - %(grace)s * interval '1 second'
               AND (lease_until IS NULL OR lease_until < now())
             ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED)
RETURNING id, video_id
"""


async def stale_deliveries(tx: Tx, grace: float) -> list[Row]:
    return await tx.fetchall(STALE_DELIVERIES, {"grace": grace})
