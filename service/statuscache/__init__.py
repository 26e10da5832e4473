"""Callers and video access, answered from memory and kept exact by the database's notifications.

The status route is polled hard (Cap's desktop app polls it while a video transcribes); one
database round trip per poll caps it far below what the web process can serve. So each web
process keeps token-hash → caller and video-id → (owner, public, transcription status) in
memory, and the hub (`service.events.hub`) applies the `capvid_cache` notifications that
triggers send on every change of those columns, in commit order. Nothing here expires by time:
an entry is right until a notification says otherwise, and is never used while the hub's
LISTEN connection is down (no notification could reach us then).

A fill (read the row, then store it) races a change that commits while the read is in flight:
its notification may be applied before the fill stores what it read. Each key with a fill in
flight has a generation that every invalidation of that key bumps, and the cache as a whole has
an epoch that every reset bumps; a fill stores its value only if neither moved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Hashable, TypeVar

if TYPE_CHECKING:
    from service.auth.caller import User

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class TokenEntry:
    user: User
    touch_due: float  # time.monotonic() after which the token's last_used_at is written again


@dataclass(frozen=True, slots=True)
class VideoEntry:
    owner_id: int
    public: bool
    transcription_status: str | None

    def readable_by(self, user_id: int) -> bool:
        return self.public or self.owner_id == user_id


@dataclass(slots=True)
class _InFlight:
    count: int = 0
    generation: int = 0
    # The read that later callers may share, while nothing changed since it began.
    shared: asyncio.Future[Any] | None = None
    shared_generation: int = 0
    shared_epoch: int = 0


class Fill(Generic[V]):
    """One read in flight: set `value` to what was read; it is stored on exit if still current."""

    __slots__ = ("value", "_inflight", "_generation", "_epoch")

    def __init__(self, inflight: _InFlight, epoch: int) -> None:
        self.value: V | None = None
        self._inflight = inflight
        self._generation = inflight.generation
        self._epoch = epoch


class GuardedMap(Generic[K, V]):
    """A bounded map whose fills lose to any invalidation that arrives while they read."""

    def __init__(self, max_entries: int, cache: StatusCache) -> None:
        self._values: dict[K, V] = {}
        self._inflight: dict[K, _InFlight] = {}
        self._max = max_entries
        self._cache = cache

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def items(self) -> list[tuple[K, V]]:
        return list(self._values.items())

    @contextmanager
    def filling(self, key: K) -> Iterator[Fill[V]]:
        inflight = self._inflight.get(key)
        if inflight is None:
            inflight = self._inflight[key] = _InFlight()
        inflight.count += 1
        fill: Fill[V] = Fill(inflight, self._cache.epoch)
        try:
            yield fill
        finally:
            inflight.count -= 1
            if inflight.count == 0:
                del self._inflight[key]
            current = inflight.generation == fill._generation and self._cache.epoch == fill._epoch
            if fill.value is not None and current and self._cache.live:
                self._store(key, fill.value)

    async def load(self, key: K, read: Callable[[], Awaitable[V | None]]) -> V | None:
        """Read the key's value and fill it. Callers that ask while a read is in flight share it, unless
        a change of the key arrived since it began: ten thousand streams rechecking one video after a
        listener reconnect make one query, not ten thousand."""
        inflight = self._inflight.get(key)
        if (
            inflight is not None
            and inflight.shared is not None
            and inflight.shared_generation == inflight.generation
            and inflight.shared_epoch == self._cache.epoch
        ):
            return await asyncio.shield(inflight.shared)
        with self.filling(key) as fill:
            # A task of its own: a caller that goes away does not cancel the read for the others.
            task = asyncio.ensure_future(read())
            task.add_done_callback(_retrieve)
            own = fill._inflight
            own.shared, own.shared_generation, own.shared_epoch = task, fill._generation, fill._epoch
            try:
                fill.value = await asyncio.shield(task)
            finally:
                if own.shared is task:
                    own.shared = None
        return fill.value

    def invalidate(self, key: K) -> None:
        inflight = self._inflight.get(key)
        if inflight is not None:
            inflight.generation += 1
        self._values.pop(key, None)

    def replace(self, key: K, value: V) -> None:
        """The key's new value, from a notification: applied if the key is cached (fills in flight lose)."""
        inflight = self._inflight.get(key)
        if inflight is not None:
            inflight.generation += 1
        if key in self._values:
            self._values[key] = value

    def invalidate_inflight(self) -> None:
        """Every fill in flight loses (a change whose keys are not known here)."""
        for inflight in self._inflight.values():
            inflight.generation += 1

    def clear(self) -> None:
        self._values.clear()

    def _store(self, key: K, value: V) -> None:
        if key not in self._values and len(self._values) >= self._max:
            # Bounded memory: the oldest entry goes (dicts keep insertion order).
            del self._values[next(iter(self._values))]
        self._values[key] = value


class StatusCache:
    """Tokens and videos; `live` only while the hub listens (else every read goes to the database)."""

    def __init__(self, max_entries: int) -> None:
        self.enabled = max_entries > 0
        self.live = False
        self.epoch = 0
        self.tokens: GuardedMap[bytes, TokenEntry] = GuardedMap(max(1, max_entries), self)
        self.videos: GuardedMap[str, VideoEntry] = GuardedMap(max(1, max_entries), self)

    def set_live(self, live: bool) -> None:
        """Listening or not: either way, what was cached before may have missed notifications."""
        self.reset()
        self.live = live and self.enabled

    def reset(self) -> None:
        self.epoch += 1
        self.tokens.clear()
        self.videos.clear()

    def apply(self, change: dict[str, Any]) -> bool:
        """One `capvid_cache` notification (see migration 0003 for the payloads). False when it is known
        to leave who may read what unchanged (a cached video whose status alone changed)."""
        if "v" in change:
            video_id = str(change["v"])
            if "s" not in change:
                self.videos.invalidate(video_id)
                return True
            new = VideoEntry(int(change["o"]), bool(change["p"]), change["s"])
            old = self.videos.get(video_id)
            self.videos.replace(video_id, new)
            return old is None or (old.owner_id, old.public) != (new.owner_id, new.public)
        elif "t" in change:
            self.tokens.invalidate(bytes.fromhex(change["t"]))
        elif "u" in change:
            user_id = int(change["u"])
            self.tokens.invalidate_inflight()
            for digest, entry in self.tokens.items():
                if entry.user.id == user_id:
                    self.tokens.invalidate(digest)
        else:
            self.reset()
        return True


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Everyone who waited has seen the error; none may be left to (e.g. they went away).
    if not task.cancelled():
        task.exception()
