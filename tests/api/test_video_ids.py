"""Every route that takes ?videoId= refuses a bad one with 400 and answers 404 for an unknown one."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api.common import UNKNOWN_ID, VIDEO_NOT_FOUND, VIDEO_ROUTES, call, expect_bad_request, expect_error, route_id
from tests.helpers import bearer, query

BAD_IDS = {
    "empty": "",
    "10kB": "a" * 10240,
    "65-chars": "a" * 65,
    "sql-or": "' OR 1=1 --",
    "sql-drop": '"; DROP TABLE videos; --',
    "quotes": "'\"`",
    "unicode": "vid\u00e9o\N{MOVIE CAMERA}",
    "nul": "\x00",
    "nul-inside": "abc\x00def",
    "path-traversal": "../../etc/passwd",
    "space": "abc def",
}


@pytest.fixture
async def existing(api, alice) -> str:
    video = await api.create_video(alice, name="keep me")
    return video["id"]


def assert_videos_intact(settings, video_id: str) -> None:
    rows = query(settings, "SELECT id, name FROM videos")
    assert rows == [{"id": video_id, "name": "keep me"}]


@pytest.mark.parametrize("route", VIDEO_ROUTES, ids=route_id)
@pytest.mark.parametrize("bad", BAD_IDS.values(), ids=BAD_IDS.keys())
async def test_bad_video_id_is_400(api, alice, existing, route, bad):
    url = f"{route.path}?videoId={quote(bad, safe='')}"
    response = await call(api.client, route, headers=bearer(alice), url=url)
    await expect_bad_request(response)
    assert_videos_intact(api.settings, existing)


@pytest.mark.parametrize("route", VIDEO_ROUTES, ids=route_id)
async def test_missing_video_id_is_400(api, alice, existing, route):
    response = await call(api.client, route, headers=bearer(alice), params={"other": "x"})
    message = await expect_bad_request(response)
    assert "videoId" in message
    assert_videos_intact(api.settings, existing)


@pytest.mark.parametrize("route", VIDEO_ROUTES, ids=route_id)
async def test_video_id_given_twice_is_400(api, alice, existing, route):
    response = await call(api.client, route, headers=bearer(alice), params=[("videoId", existing), ("videoId", existing)])
    await expect_bad_request(response)
    assert_videos_intact(api.settings, existing)


@pytest.mark.parametrize("route", VIDEO_ROUTES, ids=route_id)
@pytest.mark.parametrize("unknown", [UNKNOWN_ID, "a", "A_b-C" * 12 + "abcd"], ids=["nanoid", "1-char", "64-chars"])
async def test_unknown_video_id_is_404(api, alice, existing, route, unknown):
    response = await call(api.client, route, unknown, headers=bearer(alice))
    await expect_error(response, 404, VIDEO_NOT_FOUND)
    assert_videos_intact(api.settings, existing)
    assert query(api.settings, "SELECT count(*) AS n FROM outbox")[0]["n"] == 0
