"""A worker's own /metrics (WORKER_METRICS_PORT): job counters by function and outcome, job
durations and the transcription real-time factor, served while the worker runs."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from prometheus_client import REGISTRY
from pydantic import SecretStr

from service.dev import free_port
from tests.helpers import MEDIA, bearer, drain
from tests.observability.conftest import value
from tests.pipeline.conftest import with_deepgram
from workers.metrics import start_metrics_server, stop_metrics_server
from workers.settings import shutdown

JOBS = "capvid_jobs_total"
RTF_COUNT = "capvid_transcription_real_time_factor_count"


async def get(url: str, **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.text()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_burst_worker_serves_its_job_counters(api, alice, deepgram):
    settings = with_deepgram(api.settings, deepgram, worker_metrics_port=free_port())
    video = await api.create_video(alice)
    uploaded = await api.upload(alice, video["id"], (MEDIA / "spoken.mp4").read_bytes())
    assert uploaded.status == 200
    before = {f: counted(JOBS, function=f, outcome="complete") for f in ("transcribe", "generate_ai")}
    rtf_before = counted(RTF_COUNT)
    scrapes: list[tuple[int, str]] = []

    async def scrape_then_shut_down(ctx: dict[str, Any]) -> None:
        # The last moment the worker's server is up: arq calls this as the worker closes.
        scrapes.append(await get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"))
        await shutdown(ctx)

    await drain(settings, on_shutdown=scrape_then_shut_down)

    assert scrapes and all(status == 200 for status, _ in scrapes)
    text = scrapes[-1][1]  # counters only grow: the last scrape has every job
    for function in ("transcribe", "generate_ai"):
        assert value(text, JOBS, function=function, outcome="complete") == before[function] + 1
        assert value(text, "capvid_job_duration_seconds_count", function=function) is not None
    # Every outcome of every job function exists from the start, at 0 until it happens.
    assert value(text, JOBS, function="cleanup_storage", outcome="failed") is not None
    # 6.2 s of media (the fake's duration) transcribed once.
    assert value(text, RTF_COUNT) == rtf_before + 1
    # The port is closed with the worker.
    try:
        await get(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")
    except aiohttp.ClientConnectionError:
        pass
    else:
        raise AssertionError("the worker's metrics server outlived the worker")
    response = await api.client.get("/api/video", params={"videoId": video["id"]}, headers=bearer(alice))
    assert (await response.json())["transcriptionStatus"] == "COMPLETE"


async def test_port_zero_serves_nothing(settings):
    assert settings.worker_metrics_port == 0
    assert await start_metrics_server(settings) is None


async def test_a_taken_port_is_logged_and_the_worker_goes_on(settings, caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = await start_metrics_server(settings.model_copy(update={"worker_metrics_port": port}))
    assert runner is None
    assert any("WORKER_METRICS_PORT" in record.getMessage() for record in caplog.records)


async def test_worker_metrics_honour_the_metrics_token(settings):
    secured = settings.model_copy(update={"worker_metrics_port": free_port(), "metrics_token": SecretStr("s3cret")})
    runner = await start_metrics_server(secured)
    assert runner is not None
    url = f"http://127.0.0.1:{secured.worker_metrics_port}/metrics"
    try:
        assert (await get(url))[0] == 401
        assert (await get(url, Authorization="Bearer nope"))[0] == 401
        status, text = await get(url, Authorization="Bearer s3cret")
        assert status == 200 and value(text, "capvid_event_streams_open") is not None
    finally:
        await stop_metrics_server(runner)
