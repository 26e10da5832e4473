"""GET /api/ops/jobs: job history, newest first, filtered, a page at a time."""

from __future__ import annotations

from tests.helpers import bearer
from tests.ops.conftest import add_job_run, get_json


async def test_pages_follow_the_cursor_newest_first(client, settings, admin):
    ids = [await add_job_run(settings, job_id=f"capvid:{n}", outcome="complete", detail=f"done {n}") for n in range(5)]

    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await get_json(client, "/api/ops/jobs", admin, **params)
        seen += [job["id"] for job in page["jobs"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True) and pages == 3


async def test_a_row_carries_timings_and_the_reason(client, settings, admin):
    await add_job_run(settings, job_id="capvid:9", function="transcribe", video_id="v1", run=2, attempt=3, **{"try": 2})
    [job] = (await get_json(client, "/api/ops/jobs", admin))["jobs"]
    assert job["jobId"] == "capvid:9" and job["videoId"] == "v1" and (job["run"], job["attempt"]) == (2, 3)
    assert job["outcome"] is None and job["finishedAt"] is None and job["startedAt"]
    assert job["try"] == 2 and job["worker"] == "test:1" and job["kind"] == "transcription"


async def test_filters_by_state_function_and_video(client, settings, admin):
    await add_job_run(settings, function="transcribe", video_id="a", outcome="error")
    await add_job_run(settings, function="generate_ai", video_id="b", outcome="failed", detail="boom")
    await add_job_run(settings, function="transcribe", video_id="a", outcome="complete")
    await add_job_run(settings, function="transcribe", video_id="c", outcome="retry")
    await add_job_run(settings, function="cleanup_storage", video_id="d")

    async def listed(**params) -> list[tuple]:
        jobs = (await get_json(client, "/api/ops/jobs", admin, **params))["jobs"]
        return [(j["function"], j["videoId"], j["outcome"]) for j in jobs]

    assert await listed(state="failed") == [("generate_ai", "b", "failed"), ("transcribe", "a", "error")]
    assert await listed(state="running") == [("cleanup_storage", "d", None)]
    assert await listed(state="retry") == [("transcribe", "c", "retry")]
    assert await listed(function="transcribe", videoId="a") == [
        ("transcribe", "a", "complete"), ("transcribe", "a", "error")
    ]
    assert len(await listed()) == 5


async def test_bad_parameters_are_400(client, admin):
    bad = [{"cursor": "abc"}, {"cursor": "-1"}, {"cursor": "\u00b2"}, {"state": "exploded"}, {"limit": "0"},
           {"limit": "501"}]
    for params in bad:
        response = await client.get("/api/ops/jobs", params=params, headers=bearer(admin))
        assert response.status == 400, params
        assert (await response.json())["error"] == "Bad request"
