"""Comments and reactions: who may write, read and delete them; totalComments / totalReactions exact."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.analytics.conftest import stored
from tests.api.common import UNAUTHORIZED, UNKNOWN_ID, VIDEO_NOT_FOUND, expect_bad_request, expect_error
from tests.helpers import bearer, make_user, query

COMMENT_NOT_FOUND = {"error": "Comment not found"}
THUMBS_UP = "\N{THUMBS UP SIGN}"
COMMENT_KEYS = {"id", "videoId", "authorId", "authorName", "type", "content", "timestamp", "createdAt"}


async def post(api, token: str | None, video_id: str, **body):
    headers = bearer(token) if token else {}
    return await api.client.post("/api/video/comment", params={"videoId": video_id}, json=body, headers=headers)


async def comment(api, token: str, video_id: str, **body) -> dict:
    response = await post(api, token, video_id, **body)
    assert response.status == 201, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def remove(api, token: str, comment_id: str):
    return await api.client.delete("/api/video/comment", params={"commentId": comment_id}, headers=bearer(token))


async def totals(api, token: str, video_id: str) -> tuple[int, int]:
    video = await api.video(token, video_id)
    return video["totalComments"], video["totalReactions"]


# ---- create ------------------------------------------------------------------------------------


async def test_comment_and_reaction_are_stored_and_counted(api, alice, bob, public):
    text = await comment(api, bob, public, type="text", content="Nice demo", timestamp=12.5)
    assert set(text) == COMMENT_KEYS
    assert re.fullmatch(r"\d+", text["id"])
    assert (text["videoId"], text["authorName"], text["type"], text["content"], text["timestamp"]) == (
        public, "bob", "text", "Nice demo", 12.5,
    )  # fmt: skip
    reaction = await comment(api, alice, public, type="emoji", content=THUMBS_UP)
    assert reaction["type"] == "emoji" and reaction["timestamp"] is None
    rows = query(api.settings, "SELECT id, author_id, type, content, timestamp FROM comments ORDER BY id")
    assert [(str(r["id"]), str(r["author_id"]), r["type"], r["content"], r["timestamp"]) for r in rows] == [
        (text["id"], text["authorId"], "text", "Nice demo", 12.5),
        (reaction["id"], reaction["authorId"], "emoji", THUMBS_UP, None),
    ]
    assert await totals(api, alice, public) == (1, 1)
    assert stored(api.settings, public)["comments"] == 1 and stored(api.settings, public)["reactions"] == 1


@pytest.mark.parametrize(
    "content", [THUMBS_UP, "\N{THUMBS UP SIGN}\N{EMOJI MODIFIER FITZPATRICK TYPE-4}", "\U0001f1eb\U0001f1f7",
                "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u2764\ufe0f", "1\ufe0f\u20e3"],
    ids=["thumbs", "skin-tone", "flag", "zwj-family", "heart-vs16", "keycap"],
)  # fmt: skip
async def test_a_reaction_is_one_emoji_grapheme(api, alice, public, content):
    await comment(api, alice, public, type="emoji", content=content)
    assert await totals(api, alice, public) == (0, 1)


BAD_BODIES = {
    "emoji-two": {"type": "emoji", "content": THUMBS_UP * 2},
    "emoji-text": {"type": "emoji", "content": "ok"},
    "emoji-with-space": {"type": "emoji", "content": f" {THUMBS_UP}"},
    "emoji-empty": {"type": "emoji", "content": ""},
    "text-empty": {"type": "text", "content": ""},
    "text-blank": {"type": "text", "content": "  \n"},
    "text-too-long": {"type": "text", "content": "x" * 5001},
    "text-nul": {"type": "text", "content": "a\x00b"},
    "unknown-type": {"type": "reply", "content": "x"},
    "no-type": {"content": "x"},
    "no-content": {"type": "text"},
    "negative-timestamp": {"type": "text", "content": "x", "timestamp": -1},
    "string-timestamp": {"type": "text", "content": "x", "timestamp": "soon"},
    "unknown-field": {"type": "text", "content": "x", "authorId": "1"},
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_comment_is_400(api, alice, public, body):
    await expect_bad_request(await post(api, alice, public, **body))
    assert query(api.settings, "SELECT count(*) AS n FROM comments")[0]["n"] == 0


@pytest.mark.parametrize("raw", [b"", b"{", b'{"type": "text", "content": "x", "timestamp": 1e400}', b"[]"])
async def test_bad_comment_json_is_400(api, alice, public, raw):
    response = await api.client.post(
        "/api/video/comment", params={"videoId": public}, data=raw,
        headers={**bearer(alice), "Content-Type": "application/json"},
    )  # fmt: skip
    await expect_bad_request(response)


async def test_who_may_comment(api, alice, bob, public, private):
    await expect_error(await post(api, None, public, type="text", content="x"), 401, UNAUTHORIZED)
    for video_id in (private, UNKNOWN_ID):
        await expect_error(await post(api, bob, video_id, type="text", content="x"), 404, VIDEO_NOT_FOUND)
    await comment(api, alice, private, type="text", content="note to self")
    await comment(api, bob, public, type="text", content="hello")
    assert query(api.settings, "SELECT video_id, content FROM comments ORDER BY id") == [
        {"video_id": private, "content": "note to self"},
        {"video_id": public, "content": "hello"},
    ]


# ---- list --------------------------------------------------------------------------------------


async def test_comments_are_paged_oldest_first(api, alice, bob, public):
    made = [await comment(api, bob if n % 2 else alice, public, type="text", content=f"c{n}") for n in range(5)]
    made.append(await comment(api, bob, public, type="emoji", content=THUMBS_UP))
    seen, cursor, pages = [], None, 0
    while True:
        params = {"videoId": public, "limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await api.client.get("/api/video/comments", params=params, headers=bearer(bob))
        assert response.status == 200, await response.text()
        page = await response.json()
        assert set(page) == {"comments", "nextCursor"} and len(page["comments"]) <= 2
        seen += page["comments"]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == made
    response = await api.client.get(
        "/api/video/comments", params={"videoId": public, "cursor": "9" * 18}, headers=bearer(bob)
    )
    assert await response.json() == {"comments": [], "nextCursor": None}
    response = await api.client.get(  # past bigint: refused, not a database error
        "/api/video/comments", params={"videoId": public, "cursor": "9" * 19}, headers=bearer(bob)
    )
    assert response.status == 400
    response = await api.client.get(
        "/api/video/comments", params={"videoId": public, "type": "emoji"}, headers=bearer(alice)
    )
    assert await response.json() == {"comments": [made[-1]], "nextCursor": None}


async def test_listing_follows_read_rules(api, alice, bob, private):
    await comment(api, alice, private, type="text", content="secret")
    for video_id in (private, UNKNOWN_ID):
        response = await api.client.get("/api/video/comments", params={"videoId": video_id}, headers=bearer(bob))
        await expect_error(response, 404, VIDEO_NOT_FOUND)
    response = await api.client.get("/api/video/comments", params={"videoId": private})
    await expect_error(response, 401, UNAUTHORIZED)
    response = await api.client.get("/api/video/comments", params={"videoId": private}, headers=bearer(alice))
    assert [c["content"] for c in (await response.json())["comments"]] == ["secret"]


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "101"}, {"cursor": "abc"}, {"cursor": "-1"}, {"type": "reply"}]
)
async def test_bad_listing_is_400(api, alice, public, params):
    response = await api.client.get(
        "/api/video/comments", params={"videoId": public, **params}, headers=bearer(alice)
    )
    await expect_bad_request(response)


# ---- delete ------------------------------------------------------------------------------------


async def test_author_or_owner_deletes(api, alice, bob, settings, public):
    carol = await make_user(settings, "carol@example.com")
    by_bob = await comment(api, bob, public, type="text", content="bob's")
    by_bob_too = await comment(api, bob, public, type="emoji", content=THUMBS_UP)
    by_carol = await comment(api, carol, public, type="text", content="carol's")
    # Neither author nor owner: not found, and nothing changes.
    await expect_error(await remove(api, carol, by_bob["id"]), 404, COMMENT_NOT_FOUND)
    await expect_error(await remove(api, bob, by_carol["id"]), 404, COMMENT_NOT_FOUND)
    assert await totals(api, alice, public) == (2, 1)
    # The author, then the video's owner.
    response = await remove(api, bob, by_bob["id"])
    assert response.status == 204 and await response.read() == b""
    assert (await remove(api, alice, by_bob_too["id"])).status == 204
    assert query(api.settings, "SELECT id FROM comments") == [{"id": int(by_carol["id"])}]
    assert await totals(api, alice, public) == (1, 0)
    # Gone is gone.
    await expect_error(await remove(api, bob, by_bob["id"]), 404, COMMENT_NOT_FOUND)


async def test_delete_unknown_or_bad_comment_id(api, alice):
    await expect_error(await remove(api, alice, "999999"), 404, COMMENT_NOT_FOUND)
    for bad in ("abc", "0", "-3", "1.5", "99999999999999999999"):
        await expect_bad_request(await remove(api, alice, bad))
    response = await api.client.delete("/api/video/comment", params={"commentId": "1"})
    await expect_error(response, 401, UNAUTHORIZED)


# ---- counters under concurrency ----------------------------------------------------------------


async def test_concurrent_comments_and_deletes_keep_exact_counts(api, alice, bob, public):
    made = await asyncio.gather(
        *(comment(api, bob, public, type="text", content=f"c{n}") for n in range(60)),
        *(comment(api, alice, public, type="emoji", content=THUMBS_UP) for _ in range(40)),
    )
    assert await totals(api, alice, public) == (60, 40)
    # Every comment deleted twice at once: one delete wins, the other finds nothing.
    doomed = [c for c in made if c["type"] == "text"][:30] + [c for c in made if c["type"] == "emoji"][:10]
    responses = await asyncio.gather(*(remove(api, alice, c["id"]) for c in doomed for _ in range(2)))
    assert sorted(r.status for r in responses) == [204] * 40 + [404] * 40
    assert await totals(api, alice, public) == (30, 30)
    assert stored(api.settings, public)["comments"] == 30 and stored(api.settings, public)["reactions"] == 30


async def test_counts_follow_comments_written_by_sql(api, alice, bob, public):
    # The trigger counts whatever writes a comment: the API, an admin's SQL, a deleted author.
    bob_id = query(api.settings, "SELECT id FROM users WHERE email = 'bob@example.com'")[0]["id"]
    query(
        api.settings,
        "INSERT INTO comments (video_id, author_id, type, content) VALUES (%s, %s, 'text', 'a'), (%s, %s, 'text', 'b')"
        " RETURNING id",
        (public, bob_id, public, bob_id),
    )
    assert await totals(api, alice, public) == (2, 0)
    query(api.settings, "UPDATE comments SET type = 'emoji', content = %s WHERE content = 'a' RETURNING id", (THUMBS_UP,))
    assert await totals(api, alice, public) == (1, 1)
    query(api.settings, "DELETE FROM users WHERE id = %s RETURNING id", (bob_id,))
    assert await totals(api, alice, public) == (0, 0)
