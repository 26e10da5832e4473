"""One hub per web process: a LISTEN connection, fanned out to the process's subscribers.

Two channels arrive on one dedicated connection (aiopg.connect, not pooled: a pooled one would
go on listening after it went back to the pool):

- `capvid_events`: every `video_events` row and every progress report, handed in order to the
  event streams of that video (a bounded queue each: a subscriber that falls too far behind is
  dropped, and its client resumes with Last-Event-ID);
- `capvid_cache`: changes of what the status cache holds, applied at once, in commit order; they
  also wake the video's long-polls and make its streams check access again.

Postgres delivers notifications only while the connection is up. When it drops, the cache stops
answering (and is cleared), and once LISTEN is back every subscriber re-reads the event log after
the last id it sent, so no event is missed.

A notification reaches us a little after its transaction commits (tens of microseconds; a few
milliseconds on a loaded machine). `synced_cache` first takes in every notification that already
reached the socket (a non-blocking read, no query), so a request sees every change whose
notification arrived, even if the listener task has not run yet. With STATUS_CACHE_FENCE=true it
waits for a *fence* instead: a `SELECT 1` on the listening connection, whose answer Postgres sends
only after every notification already committed, so a change committed before the request is
always seen. One fence serves every request that arrived before it started (one query per round
trip, however many polls), but every poll then waits for that round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import aiopg
import psycopg2
from aiohttp import web

from config import Settings
from service.events.log import EVENTS_CHANNEL, event_detail
from service.events.subscribers import Item, Progress, Subscriber, Transition
from service.keys import PG_POOL, SETTINGS
from service.statuscache import StatusCache
from service.tasks import stop_task

log = logging.getLogger("capvid.events")

CACHE_CHANNEL = "capvid_cache"
RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS = 0.2, 5.0
# A dead peer (no FIN: a lost host or network) is noticed by TCP keepalive within ~30 s.
KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 15, "keepalives_interval": 5, "keepalives_count": 3}
# Set on a request once its view of the cache is synced (a later check in it needs no new fence).
SYNCED = web.RequestKey("capvid_cache_synced", bool)


class _Fence:
    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.ok = False


class Hub:
    def __init__(self, settings: Settings, pool: aiopg.Pool) -> None:
        self.cache = StatusCache(settings.status_cache_size)
        self._heartbeat_seconds = settings.event_heartbeat_seconds
        self._fence_mode = settings.status_cache_fence
        self._dsn = settings.database_url
        self._pool = pool
        self._conn: aiopg.Connection | None = None
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._pending: deque[str] = deque()  # events-channel payloads, in arrival order
        self._arrived = asyncio.Event()
        self._listening = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._fence_next: _Fence | None = None  # not started yet: it covers whoever waits for it now
        self._fence_task: asyncio.Task[None] | None = None
        self._fencing = False  # a query is in flight on the listening connection

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def wait_listening(self) -> None:
        await self._listening.wait()

    # -- what request handlers use ------------------------------------------------------------

    async def synced_cache(self, request: web.Request) -> StatusCache | None:
        """The cache with every change committed before the request was (first) synced applied;
        None while not listening (read the database)."""
        if not self.cache.live:
            return None
        if not request.get(SYNCED, False):
            if self._fence_mode:
                synced = await self._fence()
            else:
                synced = self._pump()
            request[SYNCED] = synced
            if not synced:
                return None
        return self.cache if self.cache.live else None

    @staticmethod
    def forget_sync(request: web.Request) -> None:
        """The request checks again later (a long-poll woken, a stream's recheck): sync again then."""
        request[SYNCED] = False

    @contextlib.contextmanager
    def subscribe(self, video_id: str, events: bool) -> Iterator[Subscriber]:
        subscriber = Subscriber(video_id, events)
        subscriber.closing = self._closing
        self._subscribers.setdefault(video_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            subscribers = self._subscribers.get(video_id)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[video_id]

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Background work of a request that must not make it wait (given 2 s at shutdown)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def close_subscribers(self) -> None:
        """The server is stopping: end every stream and long-poll so shutdown need not wait for them."""
        self._closing = True
        self._signal_all(closing=True)

    # -- the listener --------------------------------------------------------------------------

    async def run(self) -> None:
        """Listen forever, reconnecting with backoff."""
        processor = asyncio.create_task(self._process())
        beater = asyncio.create_task(self._beat())
        backoff = RECONNECT_MIN_SECONDS
        try:
            while True:
                try:
                    await self._listen()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("event listener lost its connection; reconnecting: %s", exc)
                if self._listening.is_set():
                    backoff = RECONNECT_MIN_SECONDS  # it was up: the next try is quick again
                self._listening.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)
        finally:
            await stop_task(beater)
            await stop_task(processor)

    async def _beat(self) -> None:
        """One timer for every stream's heartbeat comment."""
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            for subscribers in self._subscribers.values():
                for subscriber in subscribers:
                    if subscriber.events:
                        subscriber.signal(beat=True)

    async def aclose(self) -> None:
        if self._fence_task is not None:
            await stop_task(self._fence_task)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)
        for task in list(self._tasks):
            await stop_task(task)

    async def _listen(self) -> None:
        async with aiopg.connect(self._dsn, timeout=10, enable_hstore=False, **KEEPALIVE) as conn:
            async with conn.cursor() as cursor:
                await cursor.execute(f"LISTEN {EVENTS_CHANNEL}; LISTEN {CACHE_CHANNEL}")
            # From here every change reaches us. Anything before is re-read: the cache starts
            # empty and each subscriber reads the log after its last id.
            self._conn = conn
            self.cache.set_live(True)
            self._listening.set()
            self._signal_all(resync=True)
            try:
                while True:
                    self._intake(await conn.notifies.get())
                    self._drain(conn)
            finally:
                self._lose(conn)

    async def _fence(self) -> bool:
        fence = self._fence_next
        if fence is None:
            fence = self._fence_next = _Fence()
            if self._fence_task is None:
                self._fence_task = asyncio.create_task(self._run_fences())
        await fence.done.wait()
        return fence.ok

    async def _run_fences(self) -> None:
        try:
            while self._fence_next is not None:
                fence, self._fence_next = self._fence_next, None
                conn = self._conn
                try:
                    if conn is not None:
                        self._fencing = True
                        try:
                            async with conn.cursor() as cursor:
                                await cursor.execute("SELECT 1")
                        finally:
                            self._fencing = False
                        self._drain(conn)  # what arrived before the answer
                        fence.ok = self._conn is conn
                except psycopg2.Error as exc:
                    log.warning("event listener connection failed: %s", exc)
                    if conn is not None:
                        self._lose(conn)
                finally:
                    fence.done.set()
        finally:
            self._fence_task = None
            if self._fence_next is not None:
                self._fence_next.done.set()  # cancelled at shutdown: its waiters read the database
                self._fence_next = None

    def _pump(self) -> bool:
        """Take in the notifications that already reached the socket, without waiting for the loop."""
        conn = self._conn
        if conn is None:
            return False
        if self._fencing:
            return True  # aiopg is polling the connection: notifications reach us through it
        try:
            conn.raw.poll()
        except psycopg2.Error as exc:
            log.warning("event listener connection failed: %s", exc)
            self._lose(conn)
            return False
        self._drain(conn)  # aiopg's queue holds older notifications than the raw list
        received = conn.raw.notifies
        while received:
            self._intake(received.pop(0))
        return True

    def _drain(self, conn: aiopg.Connection) -> None:
        queue = conn.notifies
        while not queue.empty():
            self._intake(queue.get_nowait())

    def _lose(self, conn: aiopg.Connection) -> None:
        if self._conn is not conn:
            return
        self._conn = None
        self.cache.set_live(False)
        conn.close()  # wakes the reader in _listen with an error, which reconnects
        self._signal_all(recheck=True)  # long-polls fall back to reading the database

    def _intake(self, notify: Any) -> None:
        if notify.channel != CACHE_CHANNEL:
            self._pending.append(notify.payload)
            self._arrived.set()
            return
        try:
            change = json.loads(notify.payload)
        except ValueError:
            change = {"all": True}
        access_changed = self.cache.apply(change)
        if "v" in change:
            # Long-polls answer the status itself; streams only care whether they may still read.
            for subscriber in self._subscribers.get(str(change["v"]), ()):
                if access_changed or not subscriber.events:
                    subscriber.signal(recheck=True)
        else:
            self._signal_all(recheck=True)

    async def _process(self) -> None:
        """Hand event payloads to the video's streams, one at a time and in order."""
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                payload = self._pending.popleft()
                try:
                    data = json.loads(payload)
                    video_id = str(data["v"])
                except (ValueError, KeyError, TypeError):
                    log.warning("ignored a malformed event notification: %.200s", payload)
                    continue
                subscribers = [s for s in self._subscribers.get(video_id, ()) if s.events]
                if not subscribers:
                    continue
                try:
                    item = await self._item(data)
                except Exception as exc:
                    # Its detail could not be read: these subscribers re-read the log instead.
                    log.warning("event %s: %s", data.get("id"), exc)
                    for subscriber in subscribers:
                        subscriber.signal(resync=True)
                    continue
                for subscriber in subscribers:
                    subscriber.push(item)

    async def _item(self, data: dict[str, Any]) -> Item:
        if data.get("k") == "progress":
            return Progress(str(data["v"]), str(data["kind"]), float(data["p"]), data.get("st"))
        detail = data.get("d")
        if data.get("more"):
            detail = await event_detail(self._pool, int(data["id"]))
        return Transition(
            int(data["id"]), str(data["v"]), str(data["k"]), data.get("s"), data.get("r"), data.get("a"), detail or {}
        )

    def _signal_all(self, **flags: bool) -> None:
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.signal(**flags)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background work failed: %s", task.exception())


HUB = web.AppKey("events_hub", Hub)


async def events_ctx(app: web.Application) -> AsyncIterator[None]:
    hub = Hub(app[SETTINGS], app[PG_POOL])
    app[HUB] = hub
    task = asyncio.create_task(hub.run())
    yield
    await stop_task(task)
    await hub.aclose()


async def end_event_streams(app: web.Application) -> None:
    """on_shutdown: streams never finish by themselves, and shutdown waits for open requests."""
    hub = app.get(HUB)
    if hub is not None:
        hub.close_subscribers()
