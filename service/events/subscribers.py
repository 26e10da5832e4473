"""What the hub hands to a subscriber (an event stream or a long-poll), and the subscriber itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

QUEUE_LIMIT = 256  # events waiting for one subscriber before it is dropped


@dataclass(slots=True)
class Transition:
    """A `video_events` row."""

    id: int
    video_id: str
    kind: str
    status: str | None
    run: int | None
    attempt: int | None
    detail: dict[str, Any]
    frame: bytes | None = field(default=None, compare=False, repr=False)  # encoded once, sent to every stream

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Transition:
        return cls(row["id"], row["video_id"], row["kind"], row["status"], row["run"], row["attempt"], row["detail"])


@dataclass(slots=True)
class Progress:
    video_id: str
    kind: str
    progress: float
    step: str | None
    frame: bytes | None = field(default=None, compare=False, repr=False)


Item = Transition | Progress


@dataclass(eq=False)
class Subscriber:
    """One event stream (`events=True`) or long-poll (woken only) of a video."""

    video_id: str
    events: bool
    items: deque[Item] = field(default_factory=deque)
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False  # fell QUEUE_LIMIT behind: end it, the client resumes with Last-Event-ID
    resync: bool = False  # the listener reconnected: re-read the log after the last id sent
    recheck: bool = False  # the video's or a token's access may have changed
    closing: bool = False  # the server is shutting down
    beat: bool = False  # time for a stream's heartbeat comment

    def push(self, item: Item) -> None:
        if self.dropped or self.closing:
            return
        if len(self.items) >= QUEUE_LIMIT:
            self.dropped = True
            self.items.clear()
        else:
            self.items.append(item)
        self.woken.set()

    def signal(self, *, resync: bool = False, recheck: bool = False, closing: bool = False, beat: bool = False) -> None:
        self.resync |= resync
        self.recheck |= recheck
        self.closing |= closing
        self.beat |= beat
        self.woken.set()

    def drop_progress(self) -> None:
        self.items = deque(item for item in self.items if not isinstance(item, Progress))

    def take(self) -> list[Item]:
        items = list(self.items)
        self.items.clear()
        return items

    async def wait(self, timeout: float | None = None) -> None:
        """Until something is pushed or signalled, or `timeout` seconds pass. Streams wait without a timer
        of their own (the hub's one heartbeat tick wakes them all): ten thousand timers would cost more
        than the deliveries."""
        if not self.woken.is_set():
            if timeout is None:
                await self.woken.wait()
            elif timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self.woken.wait()
        self.woken.clear()
