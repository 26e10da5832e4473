"""Counted views: dedup per viewer per 24 h, the owner excluded, private videos, concurrency, ranges."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.analytics.conftest import START, counted, stored, view, view_count
from tests.api.common import UNAUTHORIZED, UNKNOWN_ID, VIDEO_NOT_FOUND, expect_bad_request, expect_error
from tests.helpers import bearer, query


# ---- dedup -------------------------------------------------------------------------------------


async def test_same_viewer_twice_counts_once(api, alice, clock, public):
    await counted(api.client, public, "viewer-1")
    clock.advance(hours=1)
    await counted(api.client, public, "viewer-1")
    assert await view_count(api.client, alice, public) == 1
    assert stored(api.settings, public) == {"views": 1, "days": 1, "viewers": 1, "comments": 0, "reactions": 0}


async def test_two_viewers_count_twice(api, alice, clock, public):
    await counted(api.client, public, "viewer-1")
    await counted(api.client, public, "viewer-2")
    assert await view_count(api.client, alice, public) == 2
    assert stored(api.settings, public)["views"] == stored(api.settings, public)["days"] == 2


async def test_same_viewer_counts_again_after_24_hours(api, alice, clock, public):
    await counted(api.client, public, "viewer-1")
    clock.advance(hours=23, minutes=59, seconds=59)
    await counted(api.client, public, "viewer-1")
    assert await view_count(api.client, alice, public) == 1
    clock.advance(seconds=1)  # 24 h after the counted view
    await counted(api.client, public, "viewer-1")
    assert await view_count(api.client, alice, public) == 2
    clock.advance(hours=1)  # the window restarts at the view that counted
    await counted(api.client, public, "viewer-1")
    assert await view_count(api.client, alice, public) == 2
    assert stored(api.settings, public) == {"views": 2, "days": 2, "viewers": 1, "comments": 0, "reactions": 0}
    days = query(api.settings, "SELECT day, count FROM video_view_days WHERE video_id = %s ORDER BY day", (public,))
    assert [(d["day"].isoformat(), d["count"]) for d in days] == [("2024-05-01", 1), ("2024-05-02", 1)]


async def test_viewers_are_per_video(api, alice, clock, public):
    other = (await api.create_video(alice, public=True))["id"]
    await counted(api.client, public, "viewer-1")
    await counted(api.client, other, "viewer-1")
    assert (await view_count(api.client, alice, public), await view_count(api.client, alice, other)) == (1, 1)


async def test_without_viewer_id_the_viewer_is_ip_and_user_agent(api, alice, clock, public):
    await counted(api.client, public, headers={"User-Agent": "browser A"})
    await counted(api.client, public, headers={"User-Agent": "browser A"})
    assert await view_count(api.client, alice, public) == 1
    await counted(api.client, public, headers={"User-Agent": "browser B"})
    assert await view_count(api.client, alice, public) == 2
    # Not from a trusted proxy: X-Forwarded-For is the client's own claim and changes nothing.
    await counted(api.client, public, headers={"User-Agent": "browser A", "X-Forwarded-For": "203.0.113.7"})
    assert await view_count(api.client, alice, public) == 2


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "10.9.0.0/16, 127.0.0.1"}])
async def test_forwarded_for_from_a_trusted_proxy(api, alice, clock, public):
    ua = {"User-Agent": "same browser"}
    await counted(api.client, public, headers={**ua, "X-Forwarded-For": "203.0.113.7"})
    await counted(api.client, public, headers={**ua, "X-Forwarded-For": "203.0.113.7"})
    assert await view_count(api.client, alice, public) == 1
    await counted(api.client, public, headers={**ua, "X-Forwarded-For": "203.0.113.8"})
    assert await view_count(api.client, alice, public) == 2
    # The nearest untrusted hop is the client: what it claims to its left is not believed.
    await counted(api.client, public, headers={**ua, "X-Forwarded-For": "1.2.3.4, 203.0.113.8, 10.9.1.1"})
    await counted(api.client, public, headers={**ua, "X-Forwarded-For": "5.6.7.8, 203.0.113.8"})
    assert await view_count(api.client, alice, public) == 2


async def test_raw_ips_and_viewer_ids_are_never_stored(api, alice, clock, public):
    await counted(api.client, public, "my-secret-viewer-id")
    await counted(api.client, public, headers={"User-Agent": "UniqueAgent/1.0"})
    dump = query(
        api.settings,
        "SELECT string_agg(row_to_json(t)::text, '') AS d FROM (SELECT * FROM video_viewers) t",
    )[0]["d"]
    assert "my-secret-viewer-id" not in dump and "127.0.0.1" not in dump and "UniqueAgent" not in dump
    rows = query(api.settings, "SELECT viewer_key FROM video_viewers")
    assert len(rows) == 2 and all(len(bytes(r["viewer_key"])) == 32 for r in rows)


async def test_the_salt_is_made_once_and_kept(api, alice, clock, public):
    await counted(api.client, public, "viewer-1")
    salts = query(api.settings, "SELECT value FROM secrets WHERE name = 'view_salt'")
    assert len(salts) == 1 and len(bytes(salts[0]["value"])) == 32


@pytest.mark.parametrize("settings_overrides", [{"view_salt": "a configured salt of enough length"}])
async def test_a_configured_salt_is_not_stored(api, alice, clock, public):
    await counted(api.client, public, "viewer-1")
    assert query(api.settings, "SELECT * FROM secrets") == []
    assert await view_count(api.client, alice, public) == 1


# ---- who counts --------------------------------------------------------------------------------


async def test_owner_views_do_not_count(api, alice, bob, clock, public):
    await counted(api.client, public, token=alice)
    await counted(api.client, public, "viewer-1", token=alice)
    assert await view_count(api.client, alice, public) == 0
    assert stored(api.settings, public)["viewers"] == 0
    await counted(api.client, public, token=bob)  # another user counts
    assert await view_count(api.client, alice, public) == 1


async def test_private_video_views(api, alice, bob, clock, private):
    # Anonymous and other users may not read it: the same 404 as a video that does not exist.
    for token in (None, bob):
        await expect_error(await view(api.client, private, "viewer-1", token=token), 404, VIDEO_NOT_FOUND)
        await expect_error(await view(api.client, UNKNOWN_ID, "viewer-1", token=token), 404, VIDEO_NOT_FOUND)
    # Its owner may, and the owner's views do not count.
    await counted(api.client, private, token=alice)
    assert await view_count(api.client, alice, private) == 0
    assert stored(api.settings, private)["viewers"] == 0


async def test_video_made_private_stops_counting(api, alice, clock, public):
    await counted(api.client, public, "viewer-1")
    query(api.settings, "UPDATE videos SET public = false WHERE id = %s", (public,))
    await expect_error(await view(api.client, public, "viewer-2"), 404, VIDEO_NOT_FOUND)
    assert await view_count(api.client, alice, public) == 1


@pytest.mark.parametrize("authorization", ["", "Bearer", "Basic x", "Bearer cv_" + "A" * 43])
async def test_a_token_that_is_sent_must_be_valid(api, alice, clock, public, authorization):
    response = await view(api.client, public, "viewer-1", headers={"Authorization": authorization})
    await expect_error(response, 401, UNAUTHORIZED)
    assert stored(api.settings, public)["views"] == 0


@pytest.mark.parametrize(
    "params, body",
    [
        ({}, None),
        ({"videoId": "not a valid id!"}, None),
        ({"videoId": "VIDEO"}, b"{not json"),
        ({"videoId": "VIDEO"}, b'{"viewerId": ""}'),
        ({"videoId": "VIDEO"}, b'{"viewerId": 5}'),
        ({"videoId": "VIDEO"}, b'{"viewerId": "' + b"x" * 201 + b'"}'),
        ({"videoId": "VIDEO"}, b'{"viewerId": "a\\u0000b"}'),
        ({"videoId": "VIDEO"}, b'{"viewer": "x"}'),
        ({"videoId": "VIDEO"}, b"[]"),
    ],
)
async def test_bad_view_request_is_400(api, clock, public, params, body):
    params = {k: public if v == "VIDEO" else v for k, v in params.items()}
    response = await api.client.post(
        "/api/video/view", params=params, data=body, headers={"Content-Type": "application/json"}
    )
    await expect_bad_request(response)
    assert stored(api.settings, public)["views"] == 0


# ---- concurrency -------------------------------------------------------------------------------


async def test_200_concurrent_distinct_viewers_count_exactly_200(api, alice, clock, public):
    responses = await asyncio.gather(*(view(api.client, public, f"viewer-{n}") for n in range(200)))
    assert [r.status for r in responses] == [204] * 200
    assert await view_count(api.client, alice, public) == 200
    assert stored(api.settings, public) == {"views": 200, "days": 200, "viewers": 200, "comments": 0, "reactions": 0}


async def test_concurrent_views_of_one_viewer_count_once(api, alice, clock, public):
    responses = await asyncio.gather(*(view(api.client, public, "same-viewer") for _ in range(50)))
    assert [r.status for r in responses] == [204] * 50
    assert await view_count(api.client, alice, public) == 1
    assert stored(api.settings, public) == {"views": 1, "days": 1, "viewers": 1, "comments": 0, "reactions": 0}


# ---- reading: count, range, daily series -------------------------------------------------------


async def test_count_is_the_counter_not_a_scan(api, alice, public):
    # The route reads one row; the benchmark shows it costs the same at 10 and 1,000,000 views.
    query(api.settings, "INSERT INTO video_stats (video_id, view_count) VALUES (%s, 1000000)", (public,))
    assert await view_count(api.client, alice, public) == 1_000_000


async def views_on_days(api, clock, video_id: str, per_day: dict[int, int]) -> None:
    """`per_day[d]` distinct viewers on day START + d."""
    for day, viewers in per_day.items():
        clock.now = START.replace(hour=0, minute=30) + timedelta(days=day)
        for n in range(viewers):
            await counted(api.client, video_id, f"day{day}-viewer{n}")


async def test_range_sums_the_days_asked_for(api, alice, clock, public):
    await views_on_days(api, clock, public, {0: 1, 1: 2, 3: 4})  # 2024-05-01, 05-02, 05-04
    count = view_count
    assert await count(api.client, alice, public) == 7
    assert await count(api.client, alice, public, **{"from": "2024-05-01", "to": "2024-05-01"}) == 1
    assert await count(api.client, alice, public, **{"from": "2024-05-02", "to": "2024-05-04"}) == 6
    assert await count(api.client, alice, public, **{"from": "2024-05-03", "to": "2024-05-03"}) == 0
    assert await count(api.client, alice, public, **{"from": "2024-05-02"}) == 6
    assert await count(api.client, alice, public, to="2024-05-02") == 3
    assert await count(api.client, alice, public, **{"from": "2000-01-01", "to": "2100-12-31"}) == 7


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2024-05-03", "to": "2024-05-02"},
        {"from": "yesterday"},
        {"from": "1714521600"},
        {"to": "2024-02-30"},
        {"to": "2024-05-01T00:00:00Z"},
        {"to": "2024-05-01\n"},
        {"from": ["2024-05-01", "2024-05-02"]},
    ],
)
async def test_bad_range_is_400(api, alice, public, params):
    query_items = [("videoId", public)] + [
        (k, item) for k, v in params.items() for item in (v if isinstance(v, list) else [v])
    ]
    response = await api.client.get("/api/video/analytics", params=query_items, headers=bearer(alice))
    await expect_bad_request(response)


async def test_daily_series_includes_days_without_views(api, alice, clock, public):
    await views_on_days(api, clock, public, {0: 1, 1: 2, 3: 4})
    clock.now = START.replace(day=5, hour=23)  # today is 2024-05-05
    response = await api.client.get(
        "/api/video/analytics/daily", params={"videoId": public, "days": "7"}, headers=bearer(alice)
    )
    assert response.status == 200, await response.text()
    assert await response.json() == [
        {"date": "2024-04-29", "count": 0},
        {"date": "2024-04-30", "count": 0},
        {"date": "2024-05-01", "count": 1},
        {"date": "2024-05-02", "count": 2},
        {"date": "2024-05-03", "count": 0},
        {"date": "2024-05-04", "count": 4},
        {"date": "2024-05-05", "count": 0},
    ]
    response = await api.client.get("/api/video/analytics/daily", params={"videoId": public}, headers=bearer(alice))
    series = await response.json()
    assert len(series) == 30 and series[-1]["date"] == "2024-05-05" and sum(d["count"] for d in series) == 7


async def test_daily_series_of_a_video_without_views(api, alice, clock, public):
    response = await api.client.get(
        "/api/video/analytics/daily", params={"videoId": public, "days": "1"}, headers=bearer(alice)
    )
    assert await response.json() == [{"date": "2024-05-01", "count": 0}]


@pytest.mark.parametrize("days", ["0", "367", "-1", "x", "1.5"])
async def test_bad_days_is_400(api, alice, public, days):
    response = await api.client.get(
        "/api/video/analytics/daily", params={"videoId": public, "days": days}, headers=bearer(alice)
    )
    await expect_bad_request(response)


@pytest.mark.parametrize("path", ["/api/video/analytics", "/api/video/analytics/daily"])
async def test_reading_views_follows_read_rules(api, alice, bob, clock, public, private, path):
    assert (await api.client.get(path, params={"videoId": public}, headers=bearer(bob))).status == 200
    assert (await api.client.get(path, params={"videoId": private}, headers=bearer(alice))).status == 200
    for video_id in (private, UNKNOWN_ID):
        response = await api.client.get(path, params={"videoId": video_id}, headers=bearer(bob))
        await expect_error(response, 404, VIDEO_NOT_FOUND)
    await expect_error(await api.client.get(path, params={"videoId": public}), 401, UNAUTHORIZED)


# ---- delete ------------------------------------------------------------------------------------


async def test_delete_removes_views_rollups_comments_and_counters(api, alice, bob, clock, public):
    other = (await api.create_video(alice, public=True))["id"]
    for video_id in (public, other):
        await counted(api.client, video_id, "viewer-1")
        for body in ({"type": "text", "content": "hi"}, {"type": "emoji", "content": "\N{THUMBS UP SIGN}"}):
            response = await api.client.post(
                "/api/video/comment", params={"videoId": video_id}, json=body, headers=bearer(bob)
            )
            assert response.status == 201
    response = await api.client.delete("/api/video/delete", params={"videoId": public}, headers=bearer(alice))
    assert response.status == 200
    for table in ("video_viewers", "video_view_days", "video_stats", "comments"):
        rows = query(api.settings, f"SELECT DISTINCT video_id FROM {table}")
        assert rows == [{"video_id": other}], table
    assert stored(api.settings, other) == {"views": 1, "days": 1, "viewers": 1, "comments": 1, "reactions": 1}
