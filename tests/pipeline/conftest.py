"""Fixtures for pipeline tests: uploaded videos and engines served by local fakes."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from config import Settings
from tests.fakes.deepgram import FakeDeepgram
from tests.helpers import MEDIA, Api


def with_deepgram(settings: Settings, fake: FakeDeepgram, **more: Any) -> Settings:
    return settings.model_copy(
        update={
            "transcription_engine": "deepgram",
            "deepgram_api_key": SecretStr(fake.api_key),
            "deepgram_base_url": fake.url,  # type: ignore[attr-defined]
            **more,
        }
    )


async def uploaded(api: Api, token: str, fixture: str = "spoken.mp4", **body: Any) -> str:
    video = await api.create_video(token, **body)
    response = await api.upload(token, video["id"], (MEDIA / fixture).read_bytes())
    assert response.status == 200, await response.text()
    return str(video["id"])
