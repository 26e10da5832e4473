"""The `capvid` command line, run as a subprocess against the test database."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.common import UNAUTHORIZED, expect_error
from tests.helpers import bearer, query

ROOT = Path(__file__).resolve().parents[2]
TOKEN = re.compile(r"^cv_[A-Za-z0-9_-]{43}$")


def capvid(settings, tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "STORAGE_DIR": str(tmp_path / "cli-storage"),
        **env,
    }
    # Run outside the repository so no `.env` there changes the settings.
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        check=False,
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


async def test_user_token_revoke_flow(api, settings, tmp_path):
    lines = ok(capvid(settings, tmp_path, "user", "create", "dana@example.com"))
    users = query(settings, "SELECT id, email FROM users")
    assert users == [{"id": int(lines[-1]), "email": "dana@example.com"}]

    lines = ok(capvid(settings, tmp_path, "token", "create", "dana@example.com", "--label", "laptop"))
    token = lines[-1]
    assert TOKEN.match(token), lines
    keys = query(settings, "SELECT id, token_hash, label, row_to_json(k)::text AS dump FROM api_keys k")
    assert len(keys) == 1 and keys[0]["label"] == "laptop"
    assert bytes(keys[0]["token_hash"]) == hashlib.sha256(token.encode()).digest()
    assert token not in keys[0]["dump"]

    response = await api.client.post("/api/video", json={"name": "from cli"}, headers=bearer(token))
    assert response.status == 201, await response.text()
    assert (await response.json())["ownerId"] == str(users[0]["id"])

    ok(capvid(settings, tmp_path, "token", "revoke", str(keys[0]["id"])))
    assert query(settings, "SELECT revoked_at IS NOT NULL AS revoked FROM api_keys") == [{"revoked": True}]
    await expect_error(await api.client.get("/api/videos", headers=bearer(token)), 401, UNAUTHORIZED)

    again = capvid(settings, tmp_path, "token", "revoke", str(keys[0]["id"]))
    assert again.returncode != 0 and again.stderr.strip()


async def test_each_token_is_new(settings, tmp_path):
    ok(capvid(settings, tmp_path, "user", "create", "erin@example.com"))
    first = ok(capvid(settings, tmp_path, "token", "create", "erin@example.com"))[-1]
    second = ok(capvid(settings, tmp_path, "token", "create", "erin@example.com"))[-1]
    assert first != second and TOKEN.match(first) and TOKEN.match(second)
    assert query(settings, "SELECT count(*) AS n FROM api_keys")[0]["n"] == 2


@pytest.mark.parametrize(
    "args",
    [("user", "create", "alice@example.com"), ("token", "create", "nobody@example.com"), ("token", "revoke", "999999")],
    ids=["duplicate-user", "unknown-user", "unknown-token"],
)
async def test_refused_requests_exit_non_zero(alice, settings, tmp_path, args):
    before = query(settings, "SELECT count(*) AS users, (SELECT count(*) FROM api_keys) AS keys FROM users")
    result = capvid(settings, tmp_path, *args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert query(settings, "SELECT count(*) AS users, (SELECT count(*) FROM api_keys) AS keys FROM users") == before


async def test_migrate_is_idempotent(settings, tmp_path):
    for _ in range(2):
        lines = ok(capvid(settings, tmp_path, "migrate"))
        assert lines[-1] == "applied 0 migration(s)"
    assert query(settings, "SELECT count(*) AS n FROM videos")[0]["n"] == 0


COMMANDS = [
    ("migrate",),
    ("user", "create", "frank@example.com"),
    ("token", "create", "frank@example.com"),
    ("token", "revoke", "1"),
    ("web",),
    ("worker", "--burst"),
]
INVALID_ENV = [
    *(("PORT", "abc", args) for args in COMMANDS),
    ("PORT", "70000", ("migrate",)),
    ("DATABASE_URL", "mysql://x", ("user", "create", "frank@example.com")),
    ("MAX_UPLOAD_BYTES", "-1", ("web",)),
    ("REDIS_URL", "http://x", ("worker", "--burst")),
]


@pytest.mark.parametrize(
    "variable, value, args", INVALID_ENV, ids=[f"{v}={x}-{'-'.join(a)}" for v, x, a in INVALID_ENV]
)
async def test_invalid_env_is_one_line_naming_it(settings, tmp_path, variable, value, args):
    result = capvid(settings, tmp_path, *args, **{variable: value})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert query(settings, "SELECT count(*) AS n FROM users")[0]["n"] == 0
