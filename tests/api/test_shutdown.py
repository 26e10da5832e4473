"""The outbox relay must stop when cancelled, or the app (and a worker) never finishes shutting down."""

from __future__ import annotations

import asyncio

from service import outbox


async def test_relay_stops_when_cancelled_as_a_notify_wakes_it(monkeypatch):
    wakes: list[asyncio.Event] = []

    async def listen(dsn: str, wake: asyncio.Event) -> None:  # stands in for LISTEN capvid_outbox
        wakes.append(wake)
        await asyncio.Event().wait()

    async def relay_once(*args: object) -> int:
        return 0

    monkeypatch.setattr(outbox, "_listen", listen)
    monkeypatch.setattr(outbox, "relay_once", relay_once)
    still_running = []
    for spins in range(4):
        task = asyncio.create_task(outbox.run_relay(None, "dsn", None, "q", 60))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # the relay now waits for a NOTIFY
        wakes[-1].set()  # a NOTIFY arrives...
        for _ in range(spins):
            await asyncio.sleep(0)
        task.cancel()  # ...as the app shuts down (relay_ctx cancels the relay and gathers it)
        done, _ = await asyncio.wait([task], timeout=0.3)
        if not done:
            still_running.append(spins)
            task.cancel()  # a second cancel, while it waits again, does stop it
            await asyncio.gather(task, return_exceptions=True)
    assert still_running == [], f"run_relay ignored its cancellation (after {still_running} loop turns)"
