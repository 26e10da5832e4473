"""Fixtures of the ops tests: an admin's token, and ways to put the queue and history in a known state."""

from __future__ import annotations

from typing import Any

import pytest

from config import Settings
from tests.helpers import bearer, make_user, write


@pytest.fixture
async def admin(settings: Settings) -> str:
    return await make_user(settings, "ops@example.com", admin=True)


async def get_json(client: Any, path: str, token: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=bearer(token))
    assert response.status == 200, await response.text()
    return await response.json()


async def add_video(settings: Settings, owner_email: str, **columns: Any) -> str:
    """A video row in a given state, written as the pipeline would have left it."""
    video_id = columns.pop("id")
    names = ["id", "owner_id", *columns]
    values = ", ".join(["%s", "(SELECT id FROM users WHERE email = %s)", *(["%s"] * len(columns))])
    await write(
        settings,
        f"INSERT INTO videos ({', '.join(names)}) VALUES ({values}) RETURNING id",
        (video_id, owner_email, *columns.values()),
    )
    return video_id


async def add_job_run(settings: Settings, **columns: Any) -> int:
    values = {"job_id": "capvid:0", "function": "transcribe", "worker": "test:1", **columns}
    rows = await write(
        settings,
        f"INSERT INTO job_runs ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
        tuple(values.values()),
    )
    return int(rows[0]["id"])
