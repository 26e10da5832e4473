"""SIGTERM to a worker in the middle of a job (a deploy, a scale-down): it takes no new job,
lets the running one finish within WORKER_GRACE_SECONDS, or else hands it back (claim
released, marked interrupted rather than crashed) so the next worker takes it at once,
without waiting for the lease to run out; and it exits within the grace period.

The engine is the local Deepgram fake, answering after a set delay: the job's length is known.
Leases are long (60 s) here, so only a handed-back claim can be taken over quickly.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from config import Settings
from tests.chaos.processes import Process, capvid_env
from tests.fakes.deepgram import FakeDeepgram
from tests.helpers import Api, query, record_figure
from tests.pipeline.conftest import uploaded
from tests.pipeline.test_recovery import video_row, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SHUTDOWN_SECONDS = 3.0  # after the grace period: hand back, close pools, exit
INTERRUPTED = "interrupted: the worker stopped during the attempt"


def worker_env(settings: Settings, deepgram: FakeDeepgram, grace: float, max_attempts: int = 3) -> dict[str, str]:
    return capvid_env(
        settings, DEEPGRAM_BASE_URL=deepgram.url, WORKER_GRACE_SECONDS=str(grace),  # type: ignore[attr-defined]
        LEASE_SECONDS="60", UNCLAIMED_REQUEUE_SECONDS="600", TRANSCRIPTION_MAX_ATTEMPTS=str(max_attempts),
    )


async def test_a_job_that_ends_within_the_grace_period_finishes_and_no_new_job_is_taken(
    api: Api, alice: str, deepgram: FakeDeepgram, tmp_path: Path, request: pytest.FixtureRequest
):
    grace = 15.0
    deepgram.mode, deepgram.hang_seconds = "hang", 3.0  # the job takes 3 s
    env = worker_env(api.settings, deepgram, grace)
    first = await uploaded(api, alice)
    second, took = await terminate_mid_job(api, alice, deepgram, env, tmp_path, grace + SHUTDOWN_SECONDS)
    assert took < grace

    done = video_row(api.settings, first)
    assert (done["transcription_status"], done["transcription_attempt"]) == ("COMPLETE", 1), "finished, not handed back"
    assert (done["ai_status"], done["ai_attempt"]) == ("QUEUED", 0), "its AI job, requested meanwhile, was not taken"
    assert video_row(api.settings, second)["transcription_attempt"] == 0, "no new job was taken"
    assert len(deepgram.requests) == 1

    deepgram.mode = "ok"
    await the_next_worker_completes(api.settings, [first, second], env, tmp_path)
    record_figure(request, f"the running job finished and the worker exited {took:.1f} s after SIGTERM (grace {grace:.0f} s)")


async def test_a_job_that_outlasts_the_grace_period_is_handed_back_and_taken_over_at_once(
    api: Api, alice: str, deepgram: FakeDeepgram, tmp_path: Path, request: pytest.FixtureRequest
):
    grace = 1.0
    deepgram.mode, deepgram.hang_seconds = "hang", 120.0  # longer than any grace
    # One attempt allowed: a hand-back by a stopping worker must not use it up (rolling deploys).
    env = worker_env(api.settings, deepgram, grace, max_attempts=1)
    first = await uploaded(api, alice)
    second, took = await terminate_mid_job(api, alice, deepgram, env, tmp_path, grace + SHUTDOWN_SECONDS + 10)
    assert took < grace + SHUTDOWN_SECONDS, f"exited {took:.1f} s after SIGTERM"

    handed_back = video_row(api.settings, first)
    assert handed_back["transcription_status"] == "PROCESSING"
    assert handed_back["transcription_lease_until"] is None, "the claim was released"
    assert handed_back["transcription_error"] == INTERRUPTED, "an interruption, not a crash"
    assert (handed_back["transcription_attempt"], handed_back["transcription_handbacks"]) == (1, 1)
    assert video_row(api.settings, second)["transcription_attempt"] == 0, "no new job was taken"

    deepgram.mode = "ok"
    restarted = time.monotonic()
    await the_next_worker_completes(api.settings, [first, second], env, tmp_path)
    taken_over = time.monotonic() - restarted
    assert taken_over < 60, "taken over before the 60 s lease would have run out"
    assert video_row(api.settings, first)["transcription_attempt"] == 2, "its second claim, and its only counted one"
    statuses = query(
        api.settings, "SELECT status FROM video_events WHERE video_id = %s AND kind = 'transcription' ORDER BY id",
        (first,),
    )
    assert [r["status"] for r in statuses] == ["PROCESSING", "COMPLETE"]
    record_figure(
        request,
        f"exited {took:.1f} s after SIGTERM (grace {grace:.0f} s), job handed back; "
        f"the next worker completed it {taken_over:.1f} s after starting (lease 60 s)",
    )


async def terminate_mid_job(
    api: Api, token: str, deepgram: FakeDeepgram, env: dict[str, str], tmp_path: Path, exit_within: float
) -> tuple[str, float]:
    """Start a worker, SIGTERM it once it is transcribing, upload a second video meanwhile (waiting in
    Redis while the worker drains); the second video and the seconds from SIGTERM to exit."""
    worker = Process("worker", env, tmp_path / "worker.log")
    try:
        await wait_for(lambda: len(deepgram.requests) == 1, 60, "the worker to start transcribing")
        worker.terminate()
        signalled = time.monotonic()
        second = await queued_upload(api, token)
        await worker.exited(exit_within)
    finally:
        worker.kill()
    return second, time.monotonic() - signalled


async def queued_upload(api: Api, token: str) -> str:
    """An upload whose job request has reached Redis."""
    video_id = await uploaded(api, token)
    await wait_for(
        lambda: query(api.settings, "SELECT 1 FROM outbox WHERE video_id = %s AND sent_at IS NOT NULL", (video_id,)),
        10, "the upload's job request to reach Redis",
    )
    return video_id


async def the_next_worker_completes(settings: Settings, videos: list[str], env: dict[str, str], tmp_path: Path) -> None:
    worker = Process("worker", {**env, "WORKER_GRACE_SECONDS": "0"}, tmp_path / "next-worker.log")
    try:
        await wait_for(
            lambda: all(video_row(settings, v)["ai_status"] == "COMPLETE" for v in videos), 60,
            f"the next worker to complete every video (see {tmp_path})",
        )
    finally:
        await worker.stop()
