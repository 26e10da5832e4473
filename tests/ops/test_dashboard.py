"""The /ops page in a real headless Chromium: it shows a failed job and its Retry button re-queues it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from tests.helpers import drain, query
from tests.pipeline.conftest import uploaded

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
# Generous: the first launch of a browser on a busy CI machine is slow; nothing here is a latency bound.
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (`apt-get install chromium`)"
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_the_page_lists_a_failed_job_and_its_retry_button_requeues_it(
    aiohttp_server, api, settings, admin, alice, browser
):
    video_id = await uploaded(api, alice, "corrupt.mp4")
    await drain(settings)
    assert query(settings, "SELECT transcription_status FROM videos WHERE id = %s", (video_id,)) == [
        {"transcription_status": "ERROR"}
    ]
    server = await aiohttp_server(create_app(settings))
    page = await browser.new_page()
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("console", lambda message: failures.append(message.text) if message.type == "error" else None)

    await page.goto(str(server.make_url("/ops")))
    await page.fill("#token", admin)
    await page.click("#use-token")

    row = page.locator(f'#failures tbody tr[data-video-id="{video_id}"]')
    await row.wait_for(timeout=WAIT_MS)
    assert "unreadable media" in await row.inner_text()
    assert "error" in await page.locator(f'#jobs tbody tr[data-video-id="{video_id}"]').inner_text()
    assert await page.evaluate("sessionStorage.getItem('capvidOpsToken')") == admin
    assert await page.evaluate("localStorage.length") == 0 and await page.evaluate("document.cookie") == ""

    await row.locator("button.retry").click()
    # A selector, not wait_for_function: the page's CSP rightly forbids the eval that would need.
    await page.locator("#message", has_text="PROCESSING (run 2)").wait_for(timeout=WAIT_MS)

    video = query(settings, "SELECT transcription_status, transcription_run FROM videos WHERE id = %s", (video_id,))
    assert video == [{"transcription_status": "PROCESSING", "transcription_run": 2}]
    requests = query(settings, "SELECT function, args FROM outbox WHERE video_id = %s ORDER BY id", (video_id,))
    assert [(r["function"], r["args"]["run"]) for r in requests] == [("transcribe", 1), ("transcribe", 2)]
    assert failures == []
