"""The status cache's guards, without a server: a fill that raced a change never stores what it read."""

from __future__ import annotations

import pytest

from service.auth.caller import User
from service.statuscache import StatusCache, TokenEntry, VideoEntry


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """No database or Redis here."""


def live_cache() -> StatusCache:
    cache = StatusCache(max_entries=3)
    cache.set_live(True)
    return cache


def test_a_fill_stores_what_it_read():
    cache = live_cache()
    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, False, None)
    assert cache.videos.get("v") == VideoEntry(1, False, None)


def test_a_change_during_the_read_wins_over_the_fill():
    cache = live_cache()
    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, True, None)  # what the read saw
        cache.apply({"v": "v", "o": 1, "p": False, "s": None})  # committed after it, heard before the store
    assert cache.videos.get("v") is None, "not stored: the next poll reads the row again"

    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, True, None)
        cache.apply({"v": "v"})  # deleted
    assert cache.videos.get("v") is None


def test_a_change_to_another_key_does_not_stop_a_fill():
    cache = live_cache()
    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, True, "COMPLETE")
        cache.apply({"v": "w"})
    assert cache.videos.get("v") is not None


def test_changes_of_cached_videos_are_applied_in_place():
    cache = live_cache()
    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, True, None)
    cache.apply({"v": "v", "o": 1, "p": True, "s": "PROCESSING"})
    assert cache.videos.get("v") == VideoEntry(1, True, "PROCESSING")
    cache.apply({"v": "v"})
    assert cache.videos.get("v") is None


def test_a_user_change_drops_their_tokens_and_their_fills():
    cache = live_cache()
    alice, bob = User(1, "a@x", False, 10), User(2, "b@x", False, 20)
    for digest, user in ((b"a", alice), (b"b", bob)):
        with cache.tokens.filling(digest) as fill:
            fill.value = TokenEntry(user, 0.0)
    with cache.tokens.filling(b"a2") as pending:
        pending.value = TokenEntry(alice, 0.0)
        cache.apply({"u": 1})
    assert cache.tokens.get(b"a") is None and cache.tokens.get(b"a2") is None
    assert cache.tokens.get(b"b") is not None
    cache.apply({"t": b"b".hex()})
    assert cache.tokens.get(b"b") is None


def test_not_listening_stores_nothing_and_a_reset_drops_fills_in_flight():
    cache = StatusCache(max_entries=3)
    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, True, None)
    assert cache.videos.get("v") is None, "not live: nothing cached"

    cache.set_live(True)
    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, True, None)
        cache.set_live(False)
        cache.set_live(True)  # the listener reconnected while the read was in flight
    assert cache.videos.get("v") is None
    with cache.videos.filling("v") as fill:
        fill.value = VideoEntry(1, True, None)
        cache.apply({"all": True})  # TRUNCATE
    assert cache.videos.get("v") is None


def test_memory_is_bounded():
    cache = live_cache()
    for n in range(10):
        with cache.videos.filling(str(n)) as fill:
            fill.value = VideoEntry(1, True, None)
    assert len(cache.videos) == 3
    assert cache.videos.get("9") is not None and cache.videos.get("0") is None


def test_off_when_size_is_zero():
    cache = StatusCache(max_entries=0)
    cache.set_live(True)
    assert not cache.live


async def test_concurrent_misses_share_one_read_unless_the_key_changed_meanwhile():
    import asyncio

    cache = live_cache()
    reads: list[asyncio.Event] = []

    async def read() -> VideoEntry:
        reads.append(gate := asyncio.Event())
        number = len(reads)
        await gate.wait()
        return VideoEntry(1, True, f"read {number}")

    first = asyncio.create_task(cache.videos.load("v", read))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.videos.load("v", read))
    await asyncio.sleep(0.01)
    assert len(reads) == 1, "the second caller shares the read in flight"
    cache.apply({"v": "v"})  # a change arrives while it reads
    third = asyncio.create_task(cache.videos.load("v", read))
    await asyncio.sleep(0.01)
    assert len(reads) == 2, "after a change, a caller reads again"
    for gate in reads:
        gate.set()
    assert [(await t).transcription_status for t in (first, second, third)] == ["read 1", "read 1", "read 2"]
    assert cache.videos.get("v") == VideoEntry(1, True, "read 2"), "only the read that began after the change is kept"
