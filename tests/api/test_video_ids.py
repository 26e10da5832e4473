"""Every route that takes ?videoId= refuses a bad one with 400 and answers 404 for an unknown one."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api.common import (
    UNKNOWN_ID,
    VIDEO_NOT_FOUND,
    VIDEO_ROUTES,
    call,
    expect_bad_request,
    expect_error,
    route_id,
)
from tests.helpers import bearer, query

BAD_IDS = {
    "empty": "",
    "10kB": "a" * 10240,
    "sql-or": "' OR 1=1 --",
    "sql-drop": '"; DROP TABLE videos; --',
    "unicode-and-space": "vid\u00e9o \N{MOVIE CAMERA}",
    "nul": "\x00",
    "nul-inside": "abc\x00def",
    "path-traversal": "../../etc/passwd",
    "trailing-newline": "abc\n",
}


@pytest.fixture
async def existing(api, alice) -> str:
    video = await api.create_video(alice, name="keep me")
    return video["id"]


def assert_videos_intact(settings, video_id: str) -> None:
    rows = query(settings, "SELECT id, name FROM videos")
    assert rows == [{"id": video_id, "name": "keep me"}]


async def bad_request_problem(response) -> str | None:
    """None when the response is the contract's 400, else what it was."""
    text = await response.text()
    if response.status != 400 or response.content_type != "application/json":
        return f"{response.status} {response.content_type} {text[:200]}"
    body = await response.json()
    if set(body) != {"error", "message"} or body["error"] != "Bad request":
        return text
    if not isinstance(body["message"], str) or not body["message"].strip():
        return text
    return None


@pytest.mark.parametrize("route", VIDEO_ROUTES, ids=route_id)
async def test_bad_video_id_is_400(api, alice, existing, route):
    wrong = {}
    for case, bad in BAD_IDS.items():
        url = f"{route.path}?videoId={quote(bad, safe='')}"
        problem = await bad_request_problem(await call(api.client, route, headers=bearer(alice), url=url))
        if problem:
            wrong[case] = problem
    for case, params in {
        "missing": {"other": "x"},
        "given-twice": [("videoId", existing), ("videoId", existing)],
    }.items():
        problem = await bad_request_problem(await call(api.client, route, headers=bearer(alice), params=params))
        if problem:
            wrong[case] = problem
    assert wrong == {}
    assert_videos_intact(api.settings, existing)


async def test_missing_video_id_message_names_it(api, alice, existing):
    for route in VIDEO_ROUTES:
        response = await call(api.client, route, headers=bearer(alice), params={})
        message = await expect_bad_request(response)
        assert "videoId" in message, route


@pytest.mark.parametrize("route", VIDEO_ROUTES, ids=route_id)
async def test_unknown_video_id_is_404(api, alice, existing, route):
    for unknown in [UNKNOWN_ID, "A_b-C" * 12 + "abcd"]:  # a nanoid, and the longest id allowed
        response = await call(api.client, route, unknown, headers=bearer(alice))
        await expect_error(response, 404, VIDEO_NOT_FOUND)
    assert_videos_intact(api.settings, existing)
    assert query(api.settings, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0
