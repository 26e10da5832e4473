"""AI title, summary and chapters: QUEUED → PROCESSING → COMPLETE | ERROR | SKIPPED."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import workers.settings
from service.storage import transcript_key
from tests.helpers import bearer, drain, query, write
from tests.pipeline.conftest import uploaded
from tests.pipeline.pausing import Gate, PausingAI
from workers.transcription import vtt

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "fixtures" / "transcripts"


def video_row(settings: Any, video_id: str) -> dict[str, Any]:
    return query(settings, "SELECT * FROM videos WHERE id = %s", (video_id,))[0]


async def test_spoken_video_gets_a_title_and_summary(api, alice):
    video_id = await uploaded(api, alice)
    await drain(api.settings)

    video = await api.video(alice, video_id)
    meta = video["metadata"]
    assert meta["aiGenerationStatus"] == "COMPLETE"
    assert meta["aiTitle"] and meta["summary"]
    assert "speech recognition" in meta["summary"].lower()
    assert meta["chapters"] == [], "no chapters under two minutes"
    assert video["name"] == meta["aiTitle"], "a default name follows the AI title"
    statuses = query(
        api.settings, "SELECT status FROM video_events WHERE video_id = %s AND kind = 'ai' ORDER BY id", (video_id,)
    )
    assert [r["status"] for r in statuses] == ["QUEUED", "PROCESSING", "COMPLETE"]


async def test_a_name_the_owner_chose_is_kept(api, alice):
    video_id = await uploaded(api, alice, name="Quarterly review")
    await drain(api.settings)
    video = await api.video(alice, video_id)
    assert video["metadata"]["aiGenerationStatus"] == "COMPLETE"
    assert video["name"] == "Quarterly review"


@pytest.mark.parametrize("settings_overrides", [{"ai_min_words": 50}])
async def test_too_short_transcript_is_skipped(api, alice, settings_overrides):
    video_id = await uploaded(api, alice)
    await drain(api.settings)
    row = video_row(api.settings, video_id)
    assert row["transcription_status"] == "COMPLETE"
    assert row["metadata"]["aiGenerationStatus"] == "SKIPPED"
    assert "too short" in row["ai_note"]


@pytest.mark.parametrize("settings_overrides", [{"ai_enabled": False}])
async def test_disabled_ai_is_skipped_and_cannot_be_regenerated(api, alice, settings_overrides):
    video_id = await uploaded(api, alice)
    await drain(api.settings)
    row = video_row(api.settings, video_id)
    assert row["metadata"]["aiGenerationStatus"] == "SKIPPED"
    assert row["ai_note"] == "AI generation is disabled"
    response = await api.client.post("/api/video/ai/generate", params={"videoId": video_id}, headers=bearer(alice))
    assert response.status == 409


async def test_regenerate_route(api, alice, bob):
    video_id = await uploaded(api, alice)

    async def regenerate(token: str = alice) -> Any:
        response = await api.client.post(
            "/api/video/ai/generate", params={"videoId": video_id}, headers=bearer(token)
        )
        return response.status, await response.json()

    assert await regenerate() == (409, {"error": "Conflict", "message": "The transcript is not COMPLETE yet"})
    await drain(api.settings)
    assert await regenerate(bob) == (404, {"error": "Video not found"})
    assert await regenerate() == (202, {"aiGenerationStatus": "QUEUED"})
    assert await regenerate() == (202, {"aiGenerationStatus": "QUEUED"}), "a queued run is left alone"
    await drain(api.settings)
    assert video_row(api.settings, video_id)["metadata"]["aiGenerationStatus"] == "COMPLETE"
    assert video_row(api.settings, video_id)["ai_run"] == 2


async def test_long_transcript_gets_chapters_at_the_topic_changes(api, alice):
    video = await api.create_video(alice)
    owner = video["ownerId"]
    document = (TRANSCRIPTS / "long_talk.vtt").read_text()
    cues = vtt.parse(document)
    (api.settings.storage_dir / owner / video["id"]).mkdir(parents=True)
    (api.settings.storage_dir / transcript_key(int(owner), video["id"])).write_text(document)
    await write(
        api.settings,
        """UPDATE videos SET transcription_status = 'COMPLETE', media_key = 'x', duration = 823
           WHERE id = %s RETURNING id""",
        (video["id"],),
    )
    response = await api.client.post("/api/video/ai/generate", params={"videoId": video["id"]}, headers=bearer(alice))
    assert response.status == 202
    await drain(api.settings)

    chapters = (await api.video(alice, video["id"]))["metadata"]["chapters"]
    starts = [c["start"] for c in chapters]
    assert starts[0] == 0 and starts == sorted(set(starts)) and starts[-1] < 823
    assert all(c["title"] for c in chapters)
    cue_starts = [c.start for c in cues]
    for boundary in json.loads((TRANSCRIPTS / "long_talk_boundaries.json").read_text()):
        index = cue_starts.index(boundary)
        near = cue_starts[max(0, index - 2) : index + 3]
        assert any(near[0] <= s <= near[-1] for s in starts), f"a chapter starts near {boundary}"


async def test_deleting_a_video_while_its_ai_job_runs_leaves_nothing(api, alice, monkeypatch):
    gate = Gate()
    real_build = workers.settings.build_ai_engine
    monkeypatch.setattr(workers.settings, "build_ai_engine", lambda s: PausingAI(real_build(s), gate))
    video_id = await uploaded(api, alice)
    owner = video_row(api.settings, video_id)["owner_id"]
    work = asyncio.create_task(drain(api.settings))
    try:
        await asyncio.wait_for(gate.entered.wait(), 30)
        assert video_row(api.settings, video_id)["ai_status"] == "PROCESSING"
        response = await api.client.delete(
            "/api/video/delete", params={"videoId": video_id}, headers=bearer(alice)
        )
        assert response.status == 200
    finally:
        gate.release.set()
        await asyncio.wait_for(work, 60)
    await drain(api.settings)

    assert query(api.settings, "SELECT id FROM videos WHERE id = %s", (video_id,)) == []
    events = query(api.settings, "SELECT kind FROM video_events WHERE video_id = %s", (video_id,))
    assert events == [{"kind": "deleted"}]
    assert not (api.settings.storage_dir / str(owner) / video_id).exists()
