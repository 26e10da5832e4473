"""Postgres access: one aiopg pool per process, explicit transactions, dict rows.

aiopg connections are autocommit, so a transaction is an explicit BEGIN/COMMIT on one
cursor. A connection handed back mid-transaction would be dropped by the pool with a
ResourceWarning, so the rollback path is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiopg
import psycopg2
import psycopg2.extensions
import psycopg2.extras

from config import Settings

Row = dict[str, Any]
Params = Mapping[str, Any] | tuple[Any, ...] | None

# jsonb values come back as dicts; writing one needs psycopg2's Json adapter.
Json = psycopg2.extras.Json
DatabaseError = psycopg2.Error
# Raised when the server is unreachable or a connection breaks mid-query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (psycopg2.OperationalError, psycopg2.InterfaceError, OSError)


async def create_pool(settings: Settings, minsize: int | None = None, maxsize: int | None = None) -> aiopg.Pool:
    return await aiopg.create_pool(
        str(settings.database_url),
        minsize=settings.db_pool_min if minsize is None else minsize,
        maxsize=settings.db_pool_max if maxsize is None else maxsize,
        timeout=10,
        pool_recycle=300,
    )


class Tx:
    """A cursor inside an open transaction, with helpers that return dict rows."""

    def __init__(self, cursor: aiopg.Cursor) -> None:
        self.cursor = cursor

    async def execute(self, sql: str, params: Params = None) -> int:
        await self.cursor.execute(sql, params)
        return int(self.cursor.rowcount)

    async def fetchone(self, sql: str, params: Params = None) -> Row | None:
        await self.cursor.execute(sql, params)
        row = await self.cursor.fetchone()
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str, params: Params = None) -> list[Row]:
        await self.cursor.execute(sql, params)
        return [dict(row) for row in await self.cursor.fetchall()]

    async def fetchval(self, sql: str, params: Params = None) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else next(iter(row.values()))


@asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[Tx]:
    async with pool.acquire() as conn:
        async with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
            await cursor.execute("BEGIN")
            try:
                yield Tx(cursor)
            except BaseException:
                await asyncio.shield(_rollback(conn, cursor))
                raise
            await cursor.execute("COMMIT")


async def _rollback(conn: aiopg.Connection, cursor: aiopg.Cursor) -> None:
    if conn.closed:
        return
    try:
        await cursor.execute("ROLLBACK")
    except Exception:
        # A broken connection cannot roll back; closing it makes the server discard the transaction.
        conn.close()


@asynccontextmanager
async def connection(pool: aiopg.Pool) -> AsyncIterator[Tx]:
    """Autocommit statements (single reads and single-statement writes)."""
    async with pool.acquire() as conn:
        async with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
            yield Tx(cursor)


async def fetchone(pool: aiopg.Pool, sql: str, params: Params = None) -> Row | None:
    async with connection(pool) as tx:
        return await tx.fetchone(sql, params)


async def fetchall(pool: aiopg.Pool, sql: str, params: Params = None) -> list[Row]:
    async with connection(pool) as tx:
        return await tx.fetchall(sql, params)


async def execute(pool: aiopg.Pool, sql: str, params: Params = None) -> int:
    async with connection(pool) as tx:
        return await tx.execute(sql, params)
