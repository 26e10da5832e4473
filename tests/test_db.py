"""service.db transactions: the BEGIN and deferred writes ride on the next statement, with the same
all-or-nothing result as one statement per round trip; prepared statements, once per connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiopg
import psycopg2
import pytest

from config import Settings
from service.db import NO_FLUSH_WAIT, Prepared, connection, create_pool, transaction

SCRATCH = "CREATE TABLE IF NOT EXISTS db_scratch (id int PRIMARY KEY, note text NOT NULL)"


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[aiopg.Pool]:
    pool = await create_pool(settings, minsize=0, maxsize=2)
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute(SCRATCH + "; TRUNCATE db_scratch")
    yield pool
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("DROP TABLE db_scratch")
    pool.close()
    await pool.wait_closed()


async def notes(pool: aiopg.Pool) -> list[tuple[int, str]]:
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT id, note FROM db_scratch ORDER BY id")
        return [tuple(row) for row in await cur.fetchall()]


async def test_deferred_writes_commit_with_the_transaction_in_order(pool):
    async with transaction(pool) as tx:
        await tx.defer("INSERT INTO db_scratch VALUES (%s, %s)", (1, "100% sure; it's 'quoted' %(x)s"))
        # Sent with the deferred one before it: it sees its row; its own placeholders are its own.
        seen = await tx.fetchval("SELECT count(*) FROM db_scratch WHERE id = %(id)s", {"id": 1})
        await tx.defer("UPDATE db_scratch SET note = note || %s WHERE id = 1", ("!",))
        assert await notes(pool) == []  # nothing is visible outside before the commit
    assert seen == 1
    assert await notes(pool) == [(1, "100% sure; it's 'quoted' %(x)s!")]


async def test_a_failing_deferred_write_fails_the_commit_and_rolls_everything_back(pool):
    with pytest.raises(psycopg2.IntegrityError):
        async with transaction(pool) as tx:
            await tx.execute("INSERT INTO db_scratch VALUES (1, 'first')")
            await tx.defer("INSERT INTO db_scratch VALUES (1, 'duplicate')")
    assert await notes(pool) == []
    async with transaction(pool) as tx:  # the connection went back to the pool clean
        await tx.execute("INSERT INTO db_scratch VALUES (2, 'after')")
    assert await notes(pool) == [(2, "after")]


async def test_an_error_in_the_body_discards_unsent_writes_and_rolls_back_sent_ones(pool):
    with pytest.raises(RuntimeError):
        async with transaction(pool) as tx:
            await tx.execute("INSERT INTO db_scratch VALUES (1, 'sent')")
            await tx.defer("INSERT INTO db_scratch VALUES (2, 'unsent')")
            raise RuntimeError("changed my mind")
    assert await notes(pool) == []


async def test_a_failing_first_statement_rolls_back_its_begin(pool):
    with pytest.raises(psycopg2.errors.UndefinedTable):
        async with transaction(pool) as tx:
            await tx.execute("INSERT INTO no_such_table VALUES (1)")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")  # not stuck in an aborted transaction
        assert await cur.fetchone() == (1,)


async def test_after_commit_runs_once_the_transaction_committed_and_never_after_a_rollback(pool):
    called: list[str] = []
    async with transaction(pool) as tx:
        await tx.defer("INSERT INTO db_scratch VALUES (1, 'one')")
        tx.after_commit(lambda: called.append("committed"))
        assert called == []
    assert called == ["committed"] and await notes(pool) == [(1, "one")]

    with pytest.raises(psycopg2.errors.UniqueViolation):
        async with transaction(pool) as tx:
            tx.after_commit(lambda: called.append("rolled back"))
            await tx.defer("INSERT INTO db_scratch VALUES (1, 'again')")
    assert called == ["committed"]


# A named parameter used twice, and a cast that types it for PREPARE.
INSERT_NOTE = Prepared(
    "db_scratch_insert", "INSERT INTO db_scratch VALUES (%(id)s, %(note)s::text || '/' || %(note)s) RETURNING id"
)


async def prepared_here(pool: aiopg.Pool) -> list[str]:
    async with connection(pool) as tx:
        rows = await tx.fetchall("SELECT name FROM pg_prepared_statements WHERE name = %s", (INSERT_NOTE.name,))
    return [row["name"] for row in rows]


@pytest.fixture
async def one_connection(pool: aiopg.Pool, settings: Settings) -> AsyncIterator[aiopg.Pool]:
    """A pool of one connection: every statement below runs in the same session."""
    single = await create_pool(settings, minsize=0, maxsize=1)
    yield single
    single.close()
    await single.wait_closed()


async def test_a_prepared_statement_is_prepared_once_per_connection_and_takes_named_values(one_connection):
    assert await prepared_here(one_connection) == []
    async with connection(one_connection) as tx:
        assert await tx.fetchval(INSERT_NOTE, {"note": "a", "id": 1}) == 1
    async with transaction(one_connection) as tx:
        await tx.defer(INSERT_NOTE, {"id": 2, "note": "it's 100%"})
    assert await prepared_here(one_connection) == ["db_scratch_insert"]
    assert await notes(one_connection) == [(1, "a/a"), (2, "it's 100%/it's 100%")]


async def test_a_statement_prepared_in_a_rolled_back_transaction_stays_prepared(one_connection):
    with pytest.raises(psycopg2.errors.UniqueViolation):
        async with transaction(one_connection) as tx:
            await tx.execute("INSERT INTO db_scratch VALUES (1, 'first')")
            await tx.fetchone(INSERT_NOTE, {"id": 1, "note": "duplicate"})
    # PREPARE is not transactional: preparing it again would fail ("already exists").
    async with transaction(one_connection) as tx:
        await tx.fetchone(INSERT_NOTE, {"id": 1, "note": "again"})
    assert await notes(one_connection) == [(1, "again/again")]


async def test_a_session_that_lost_its_prepared_statements_prepares_them_again(one_connection):
    async with connection(one_connection) as tx:
        await tx.fetchone(INSERT_NOTE, {"id": 1, "note": "one"})
        await tx.execute("DISCARD ALL")
    with pytest.raises(psycopg2.errors.InvalidSqlStatementName):
        async with connection(one_connection) as tx:
            await tx.fetchone(INSERT_NOTE, {"id": 2, "note": "lost"})
    async with connection(one_connection) as tx:
        await tx.fetchone(INSERT_NOTE, {"id": 3, "note": "three"})
    assert await notes(one_connection) == [(1, "one/one"), (3, "three/three")]


async def test_a_connection_keeps_one_cursor_and_a_closed_one_is_replaced(one_connection):
    async with connection(one_connection) as tx:
        first = tx.cursor
        assert await tx.fetchval("SELECT pg_backend_pid()")
    async with transaction(one_connection) as tx:
        assert tx.cursor is first
        await tx.execute("INSERT INTO db_scratch VALUES (1, 'kept')")
    # A connection that broke is dropped by the pool; the next one opens a cursor of its own.
    async with one_connection.acquire() as conn:
        conn.close()
    async with connection(one_connection) as tx:
        assert tx.cursor is not first
        assert await tx.fetchval("SELECT note FROM db_scratch") == "kept"


async def test_a_write_that_skips_the_flush_wait_skips_it_for_its_own_commit_only(one_connection):
    async with connection(one_connection) as tx:
        default = await tx.fetchval("SHOW synchronous_commit")
        await tx.execute("INSERT INTO db_scratch VALUES (1, 'leased')")
        during = await tx.fetchval(
            f"UPDATE db_scratch SET note = 'beat' FROM {NO_FLUSH_WAIT} WHERE id = 1 "
            "RETURNING current_setting('synchronous_commit')"
        )
        # The session's next statement (a completion, say) waits for its flush as before.
        after = await tx.fetchval("SHOW synchronous_commit")
    assert (default, during, after) == ("on", "off", "on")
    assert await notes(one_connection) == [(1, "beat")]
