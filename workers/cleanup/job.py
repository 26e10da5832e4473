"""Storage cleanup of a deleted video: every object under its prefix, in pages and batches.

Idempotent: missing objects count as deleted, and a cleanup found unfinished by recovery
(worker died, Redis lost the job) simply runs again.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry
from pydantic import BaseModel, Field

from service.db import Json, transaction
from service.storage import StorageUnavailable
from workers.deps import deps

log = logging.getLogger("capvid.cleanup")
MAX_BACKOFF_SECONDS = 300.0


class CleanupArgs(BaseModel):
    cleanup_id: int = Field(alias="cleanupId")


async def cleanup_storage(ctx: dict[str, Any], video_id: str, args: dict[str, Any]) -> str:
    d = deps(ctx)
    cleanup_id = CleanupArgs.model_validate(args).cleanup_id
    async with transaction(d.pool) as tx:
        row = await tx.fetchone(
            """
            UPDATE storage_cleanups SET attempts = attempts + 1, heartbeat_at = now()
            WHERE id = %s AND finished_at IS NULL RETURNING backend, prefix, attempts
            """,
            (cleanup_id,),
        )
    if row is None:
        return "already finished"
    storage = d.storage_for(row["backend"])
    deleted, failures = 0, []
    try:
        async for page in storage.list_keys(row["prefix"]):
            failures += await storage.delete_keys(page)
            deleted += len(page)
            async with transaction(d.pool) as tx:
                await tx.execute("UPDATE storage_cleanups SET heartbeat_at = now() WHERE id = %s", (cleanup_id,))
    except (StorageUnavailable, OSError, ConnectionError) as exc:
        await _record_error(d.pool, cleanup_id, f"{type(exc).__name__}: {exc}", [])
        backoff = min(MAX_BACKOFF_SECONDS, d.settings.retry_backoff_seconds * 2 ** (row["attempts"] - 1))
        raise Retry(defer=backoff) from exc
    if failures:
        await _record_error(d.pool, cleanup_id, f"{len(failures)} object(s) could not be deleted", failures)
        raise Retry(defer=min(MAX_BACKOFF_SECONDS, d.settings.retry_backoff_seconds * 2 ** (row["attempts"] - 1)))
    async with transaction(d.pool) as tx:
        await tx.execute(
            """
            UPDATE storage_cleanups SET finished_at = now(), deleted_keys = deleted_keys + %s, last_error = NULL,
                   failed_keys = '[]'
            WHERE id = %s
            """,
            (deleted, cleanup_id),
        )
    return f"deleted {deleted} object(s)"


async def _record_error(pool: Any, cleanup_id: int, reason: str, failures: list[tuple[str, str]]) -> None:
    log.warning("cleanup %s: %s", cleanup_id, reason)
    async with transaction(pool) as tx:
        await tx.execute(
            "UPDATE storage_cleanups SET last_error = %s, failed_keys = %s, heartbeat_at = now() WHERE id = %s",
            (reason, Json([{"key": k, "reason": r} for k, r in failures[:1000]]), cleanup_id),
        )
