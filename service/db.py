"""Postgres access: one aiopg pool per process, explicit transactions, dict rows.

aiopg connections are autocommit, so a transaction is an explicit BEGIN/COMMIT on one
cursor; its BEGIN and its deferred writes travel with its next statement (see Tx), which
saves round trips on the hot paths of the worker. The worker's per-job statements are `Prepared`:
Postgres parses and plans each once per connection instead of on every call. A connection handed back
mid-transaction would be dropped by the pool with a ResourceWarning, so the rollback path
is shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import aiopg
import psycopg2
import psycopg2.errors
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
        # aiopg recycles a connection whose last cursor was opened this long ago. Each connection opens
        # its cursor once (see _cursor_of), so this is a connection's lifetime: it is reopened at its
        # first checkout after 5 minutes, busy or not.
        pool_recycle=300,
    )


# A FROM item for a write that is liveness or news, never state (a lease's heartbeat, a progress report):
# its commit does not wait for the WAL flush. If Postgres crashes within the flush delay (at most three times
# wal_writer_delay: 600 ms by default) the last such writes are lost, the database staying consistent: a lease
# then ends a little early, which the attempt guard on every later write makes safe, and a progress figure is
# a step behind.
# It spares the most frequent writes of a running job a disk flush each. Only in a statement that runs alone
# (autocommit, see `connection`): in a transaction it would apply to the whole transaction's commit.
NO_FLUSH_WAIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait"


class Prepared:
    """A statement run often enough that parsing and planning it on every call shows in Postgres' CPU
    (a job's claim, heartbeat and completion). Written like any statement, with %(name)s parameters
    (a cast such as %(lease)s::float8 types one); each connection PREPAREs it on first use and then
    sends only EXECUTE with the values. Prepared statements live as long as their session, which is
    why a pooler in front of Postgres must run in session mode (LISTEN needs that anyway)."""

    _PARAMETER = re.compile(r"%\((\w+)\)s")

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        self.parameters: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in self.parameters:
                self.parameters.append(match.group(1))
            return f"${self.parameters.index(match.group(1)) + 1}"

        self.prepare = f"PREPARE {name} AS {self._PARAMETER.sub(number, sql)}"
        self.execute = f"EXECUTE {name}({', '.join(['%s'] * len(self.parameters))})"

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.parameters)


# The statements each live connection has prepared. PREPARE is not transactional: once it ran, the
# statement exists for the session even if the transaction around it rolled back.
_prepared_on: "weakref.WeakKeyDictionary[Any, set[str]]" = weakref.WeakKeyDictionary()


class Tx:
    """A cursor on one connection, with helpers that return dict rows.

    In a transaction, statements not sent yet (the BEGIN, and writes whose result nobody reads,
    see `defer`) ride on the next round trip: "BEGIN; INSERT ...; UPDATE ..." runs as one simple
    query and only its last statement's result comes back, which is the caller's.
    """

    def __init__(self, cursor: aiopg.Cursor, in_transaction: bool = False) -> None:
        self.cursor = cursor
        self.in_transaction = in_transaction
        self.unsent: list[bytes] = [b"BEGIN"] if in_transaction else []
        self.sent = False  # something reached the server: a rollback has work to do
        self.committed_callbacks: list[Callable[[], None]] = []

    async def _execute(self, sql: str | bytes | Prepared, params: Params) -> None:
        if isinstance(sql, Prepared):
            sql, params = await self._executing(sql, params)
        if self.unsent:
            statement = sql if isinstance(sql, bytes) else self.cursor.mogrify(sql, params)
            # Rendered here, so no text of one statement is taken for another's placeholder.
            sql, params = b";".join([*self.unsent, statement]), None
            self.unsent.clear()
        self.sent = True
        try:
            # psycopg2 takes a rendered query as bytes as well (aiopg's annotation says str only).
            await self.cursor.execute(cast(str, sql), params)
        except psycopg2.errors.InvalidSqlStatementName:
            # The session lost its prepared statements (DISCARD ALL): prepare again on next use.
            _prepared_on.pop(self.cursor.raw.connection, None)
            raise

    async def _executing(self, statement: Prepared, params: Params) -> tuple[str, tuple[Any, ...]]:
        """The EXECUTE of `statement`, once this connection has prepared it: the PREPARE runs on its own
        (once per connection), so whether it happened is never in doubt."""
        prepared = _prepared_on.setdefault(self.cursor.raw.connection, set())
        if statement.name not in prepared:
            await self.cursor.execute(statement.prepare)
            prepared.add(statement.name)
        assert isinstance(params, Mapping), "a Prepared statement takes named parameters"
        return statement.execute, statement.values(params)

    async def execute(self, sql: str | Prepared, params: Params = None) -> int:
        await self._execute(sql, params)
        return int(self.cursor.rowcount)

    async def defer(self, sql: str | Prepared, params: Params = None) -> None:
        """A write whose result (or failure) matters only to the transaction as a whole: it is sent
        with the transaction's next statement or its COMMIT. Outside a transaction, it runs now."""
        if not self.in_transaction:
            await self._execute(sql, params)
            return
        if isinstance(sql, Prepared):
            sql, params = await self._executing(sql, params)
        self.unsent.append(self.cursor.mogrify(sql, params))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this transaction has committed (never if it rolls back); outside a
        transaction, every statement sent has already committed, so at once."""
        if self.in_transaction:
            self.committed_callbacks.append(callback)
        else:
            callback()

    async def fetchone(self, sql: str | Prepared, params: Params = None) -> Row | None:
        await self._execute(sql, params)
        row = await self.cursor.fetchone()
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str | Prepared, params: Params = None) -> list[Row]:
        await self._execute(sql, params)
        return [dict(row) for row in await self.cursor.fetchall()]

    async def fetchval(self, sql: str | Prepared, params: Params = None) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else next(iter(row.values()))

    async def commit(self) -> None:
        if self.sent or self.unsent != [b"BEGIN"]:
            await self._execute(b"COMMIT", None)


_CURSOR_ATTRIBUTE = "_capvid_cursor"


async def _cursor_of(conn: aiopg.Connection) -> aiopg.Cursor:
    """The connection's own dict-row cursor, opened on its first use and kept as long as the connection.
    Opening and closing a cursor for every checkout was a good part of a worker's CPU a job
    (bench/README.md). It lives on the connection object: a cache beside it would keep the connection
    alive, since the cursor refers to it. It holds its last result until the connection's next statement:
    at most one result per pooled connection."""
    cursor: aiopg.Cursor | None = getattr(conn, _CURSOR_ATTRIBUTE, None)
    if cursor is None or cursor.closed:
        cursor = await conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
        setattr(conn, _CURSOR_ATTRIBUTE, cursor)
    return cursor


@asynccontextmanager
async def transaction(pool: aiopg.Pool) -> AsyncIterator[Tx]:
    async with pool.acquire() as conn:
        cursor = await _cursor_of(conn)
        tx = Tx(cursor, in_transaction=True)
        try:
            yield tx
            # Inside the try: a deferred write can fail here, and must leave nothing behind.
            await tx.commit()
        except BaseException:
            if tx.sent:
                await asyncio.shield(_rollback(conn, cursor))
            raise
    for callback in tx.committed_callbacks:
        callback()


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
        yield Tx(await _cursor_of(conn))


async def fetchone(pool: aiopg.Pool, sql: str, params: Params = None) -> Row | None:
    async with connection(pool) as tx:
        return await tx.fetchone(sql, params)


async def fetchall(pool: aiopg.Pool, sql: str, params: Params = None) -> list[Row]:
    async with connection(pool) as tx:
        return await tx.fetchall(sql, params)


async def execute(pool: aiopg.Pool, sql: str, params: Params = None) -> int:
    async with connection(pool) as tx:
        return await tx.execute(sql, params)
