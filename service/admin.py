"""User and token administration behind `capvid user` / `capvid token`."""

from __future__ import annotations

import aiopg

from config import Settings
from service.auth.queries import create_user, insert_token, revoke_token, user_id_by_email
from service.auth.tokens import new_token, token_hash
from service.db import create_pool, transaction


class AdminError(Exception):
    """A request the command line answers with a message and a non-zero exit."""


async def _with_pool(settings: Settings) -> aiopg.Pool:
    return await create_pool(settings, minsize=0, maxsize=2)


async def add_user(settings: Settings, email: str, name: str, is_admin: bool) -> int:
    pool = await _with_pool(settings)
    try:
        async with transaction(pool) as tx:
            if await user_id_by_email(tx, email) is not None:
                raise AdminError(f"a user with email {email} already exists")
            return await create_user(tx, email, name, is_admin)
    finally:
        pool.close()
        await pool.wait_closed()


async def issue_token(settings: Settings, email: str, label: str) -> tuple[int, str]:
    """A new token for the user: (token id, raw token). Only its hash is stored."""
    pool = await _with_pool(settings)
    try:
        async with transaction(pool) as tx:
            user_id = await user_id_by_email(tx, email)
            if user_id is None:
                raise AdminError(f"no user with email {email}")
            token = new_token()
            token_id = await insert_token(tx, user_id, token_hash(token), label)
            return token_id, token
    finally:
        pool.close()
        await pool.wait_closed()


async def withdraw_token(settings: Settings, token_id: int) -> None:
    pool = await _with_pool(settings)
    try:
        async with transaction(pool) as tx:
            if not await revoke_token(tx, token_id):
                raise AdminError(f"no active token with id {token_id}")
    finally:
        pool.close()
        await pool.wait_closed()
