"""The event stream's events as typed objects, and the video state they add up to.

Wire format (GET /api/video/events): `state` (the current state, first on a fresh stream),
`transcription` and `ai` (a state transition, with an id), `progress` (no id), `deleted`
(the last event). Unknown event names are ignored so a newer server does not break an
older client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from service.client.errors import CapvidProtocolError
from service.client.sse import ServerSentEvent
from service.models import AiGenerationStatus, TranscriptionStatus

TRANSCRIPTION_DONE: frozenset[str] = frozenset({"COMPLETE", "ERROR"})
AI_DONE: frozenset[str] = frozenset({"COMPLETE", "ERROR", "SKIPPED"})


class _Event(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    video_id: str


class StateEvent(_Event):
    """The video's state when the stream opened; `event_id` is the newest event id (or 0)."""

    event_id: int | None = None
    transcription_status: TranscriptionStatus | None = None
    transcription_progress: float | None = None
    ai_generation_status: AiGenerationStatus | None = None


class TranscriptionEvent(_Event):
    event_id: int
    transcription_status: TranscriptionStatus
    run: int | None = None
    attempt: int | None = None
    detail: dict[str, Any] = {}


class AiEvent(_Event):
    event_id: int
    ai_generation_status: AiGenerationStatus
    run: int | None = None
    attempt: int | None = None
    detail: dict[str, Any] = {}


class ProgressEvent(_Event):
    kind: Literal["transcription", "ai"]
    progress: float
    step: str | None = None


class DeletedEvent(_Event):
    event_id: int


VideoEvent = StateEvent | TranscriptionEvent | AiEvent | ProgressEvent | DeletedEvent
_TYPES: dict[str, type[_Event]] = {
    "state": StateEvent,
    "transcription": TranscriptionEvent,
    "ai": AiEvent,
    "progress": ProgressEvent,
    "deleted": DeletedEvent,
}


def parse_event(sse: ServerSentEvent) -> VideoEvent | None:
    """The typed event, or None for an event name this client does not know."""
    model = _TYPES.get(sse.event)
    if model is None:
        return None
    try:
        data = json.loads(sse.data)
        if model is StateEvent and isinstance(data, dict) and "eventId" not in data and sse.id.isdigit():
            data["eventId"] = int(sse.id)  # the state event carries its id on the `id:` line only
        return model.model_validate(data)  # type: ignore[return-value]
    except (ValueError, ValidationError) as exc:
        raise CapvidProtocolError(f"malformed {sse.event!r} event: {exc}") from None


@dataclass(frozen=True)
class VideoState:
    """What the stream says about a video so far.

    `ai_generation_status` is the AI status *of the current transcript*: None while a
    transcription is running (the AI result of an earlier transcript is stale) and between a
    transcription's COMPLETE and the AI event committed with it.
    """

    video_id: str
    transcription_status: str | None = None
    transcription_progress: float | None = None
    ai_generation_status: str | None = None
    ai_progress: float | None = None
    last_event_id: int | None = None
    deleted: bool = False
    transcription_detail: dict[str, Any] = field(default_factory=dict)
    ai_detail: dict[str, Any] = field(default_factory=dict)

    def apply(self, event: VideoEvent) -> VideoState:
        if isinstance(event, StateEvent):
            stale_ai = event.transcription_status != "COMPLETE"
            return replace(
                self,
                transcription_status=event.transcription_status,
                transcription_progress=event.transcription_progress,
                ai_generation_status=None if stale_ai else event.ai_generation_status,
                ai_progress=None,
                last_event_id=event.event_id if event.event_id is not None else self.last_event_id,
            )
        if isinstance(event, TranscriptionEvent):
            progress = {"PROCESSING": 0.0, "COMPLETE": 1.0}.get(event.transcription_status)
            return replace(
                self,
                transcription_status=event.transcription_status,
                transcription_progress=progress,
                transcription_detail=event.detail,
                # A new run, or a new transcript whose AI event follows in the same transaction.
                ai_generation_status=None,
                ai_progress=None,
                last_event_id=event.event_id,
            )
        if isinstance(event, AiEvent):
            ai_status = event.ai_generation_status
            return replace(
                self,
                ai_generation_status=ai_status,
                ai_progress={"QUEUED": 0.0, "PROCESSING": 0.0, "COMPLETE": 1.0}.get(ai_status),
                ai_detail=event.detail,
                last_event_id=event.event_id,
            )
        if isinstance(event, ProgressEvent):
            if event.kind == "transcription":
                return replace(self, transcription_progress=event.progress)
            return replace(self, ai_progress=event.progress)
        return replace(self, deleted=True, last_event_id=event.event_id)
