"""Every authenticated route refuses a missing, malformed, unknown or revoked token with a JSON 401."""

from __future__ import annotations

import hashlib
import secrets

import pytest

from service.admin import withdraw_token
from service.auth.tokens import token_hash
from tests.api.common import ROUTES, UNAUTHORIZED, call, expect_error, route_id
from tests.helpers import bearer, make_user, query

BAD_AUTHORIZATION = {
    "missing": None,
    "empty": "",
    "bearer-without-token": "Bearer",
    "bearer-blank": "Bearer    ",
    "basic": "Basic x",
    "token-without-scheme": "cv_" + "A" * 43,
    "junk-10kB-token-charset": "Bearer " + "A" * 10240,
    "junk-10kB-punctuation": "Bearer " + "!@#$%^&*()" * 1024,
    "unknown-well-formed": "Bearer cv_" + secrets.token_urlsafe(32),
    "two-tokens": "Bearer cv_" + "A" * 43 + " cv_" + "B" * 43,
}


@pytest.fixture
async def video_id(api, alice) -> str:
    # A real video of alice's: a route that skipped authentication would answer 200, not 401.
    return (await api.create_video(alice, name="target", public=True))["id"]


async def expect_unauthorized(response) -> str | None:
    """None when the response is the contract's 401, else what it was."""
    text = await response.text()
    if response.status != 401 or response.content_type != "application/json" or await response.json() != UNAUTHORIZED:
        return f"{response.status} {response.content_type} {text[:200]}"
    return None


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_bad_token_is_401(api, video_id, route):
    before = query(api.settings, "SELECT id, name, media_key FROM videos ORDER BY id")
    wrong = {}
    for case, authorization in BAD_AUTHORIZATION.items():
        if authorization is None and route.anonymous:
            continue  # no token at all is an anonymous viewer (tests/analytics checks what that may do)
        headers = {} if authorization is None else {"Authorization": authorization}
        problem = await expect_unauthorized(await call(api.client, route, video_id, headers=headers))
        if problem:
            wrong[case] = problem
    assert wrong == {}
    assert query(api.settings, "SELECT id, name, media_key FROM videos ORDER BY id") == before


async def test_revoked_token_is_401(api, settings, video_id):
    token = await make_user(settings, "carol@example.com")
    key_id = query(settings, "SELECT id FROM api_keys WHERE token_hash = %s", (token_hash(token),))[0]["id"]
    ok = await api.client.get("/api/videos", headers=bearer(token))
    assert ok.status == 200
    await withdraw_token(settings, key_id)
    assert query(settings, "SELECT revoked_at IS NOT NULL AS revoked FROM api_keys WHERE id = %s", (key_id,)) == [
        {"revoked": True}
    ]
    wrong = {}
    for route in ROUTES:
        problem = await expect_unauthorized(await call(api.client, route, video_id, headers=bearer(token)))
        if problem:
            wrong[str(route)] = problem
    assert wrong == {}


async def test_revoked_by_sql_is_401(api, alice):
    assert (await api.client.get("/api/videos", headers=bearer(alice))).status == 200
    query(api.settings, "UPDATE api_keys SET revoked_at = now() WHERE token_hash = %s", (token_hash(alice),))
    await expect_error(await api.client.get("/api/videos", headers=bearer(alice)), 401, UNAUTHORIZED)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_valid_token_is_accepted(api, alice, scheme):
    response = await api.client.get("/api/videos", headers={"Authorization": f"{scheme} {alice}"})
    assert response.status == 200, await response.text()
    assert await response.json() == {"videos": [], "nextCursor": None}


async def test_tokens_are_stored_only_as_sha256(api, alice, bob):
    rows = query(api.settings, "SELECT k.*, row_to_json(k)::text AS as_json FROM api_keys k ORDER BY id")
    assert len(rows) == 2
    for token, row in zip([alice, bob], rows, strict=True):
        assert bytes(row["token_hash"]) == hashlib.sha256(token.encode()).digest()
        for column, value in row.items():
            text = bytes(value).hex() if isinstance(value, memoryview) else str(value)
            assert token not in text, column
            assert token[3:] not in text, column  # not even without its prefix
    # and nowhere else in the database either
    for table in ["users", "videos", "video_events", "outbox"]:
        dump = query(api.settings, f"SELECT coalesce(string_agg(row_to_json(t)::text, ''), '') AS d FROM {table} t")
        assert alice not in dump[0]["d"] and bob not in dump[0]["d"]


async def test_token_last_use_is_recorded(api, alice):
    assert query(api.settings, "SELECT last_used_at FROM api_keys")[0]["last_used_at"] is None
    assert (await api.client.get("/api/videos", headers=bearer(alice))).status == 200
    assert query(api.settings, "SELECT last_used_at FROM api_keys")[0]["last_used_at"] is not None
