"""Pydantic models at the HTTP edge: queries, bodies and responses (camelCase JSON).

The OpenAPI document is generated from these same models.
"""

from __future__ import annotations

import re
from datetime import date as Date
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import emoji
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

TranscriptionStatus = Literal["PROCESSING", "COMPLETE", "ERROR"]
AiGenerationStatus = Literal["QUEUED", "PROCESSING", "COMPLETE", "ERROR", "SKIPPED"]

VideoId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
    Field(description="the video's id (URL-safe, like Cap's 15-character nanoid)", examples=["k3j9x0a8b7c6d5e"]),
]


def _no_nul(value: str) -> str:
    # Postgres text and jsonb reject NUL and lone surrogates: refuse them here as bad input
    # rather than failing in the database.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


SafeText = Annotated[str, AfterValidator(_no_nul)]


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class QueryModel(CamelModel):
    # Unknown query parameters (cache busters and the like) are ignored, not refused.
    model_config = ConfigDict(extra="ignore")


class VideoIdQuery(QueryModel):
    video_id: VideoId


class StatusQuery(VideoIdQuery):
    wait: float | None = Field(
        None,
        gt=0,
        le=30,
        description="long-poll: with an If-None-Match of the current ETag, hold the request until the status "
        "changes or this many seconds pass (then 304)",
    )


class TranscribeQuery(VideoIdQuery):
    force: bool = Field(False, description="re-transcribe a COMPLETE video")


class ListVideosQuery(QueryModel):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, max_length=200, description="`nextCursor` of the previous page")
    transcription_status: Literal["PROCESSING", "COMPLETE", "ERROR", "NONE"] | None = Field(
        None, description="only videos in this state (NONE: never transcribed)"
    )


class Chapter(CamelModel):
    title: SafeText
    start: float = Field(ge=0)


def _check_metadata_value(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        raise ValueError("metadata is nested too deeply")
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _check_metadata_value(item, depth + 1)
    if isinstance(value, list):
        for item in value:
            _check_metadata_value(item, depth + 1)
    return value


class VideoMetadata(BaseModel):
    """The seed's metadata; unknown keys from clients are kept (Cap adds keys over time)."""

    model_config = ConfigDict(extra="allow")

    customCreatedAt: datetime | None = None
    sourceName: SafeText | None = Field(None, max_length=500)
    aiTitle: str | None = None
    summary: str | None = None
    chapters: list[Chapter] | None = None
    aiGenerationStatus: AiGenerationStatus | None = None
    enhancedAudioStatus: Literal["PROCESSING", "COMPLETE", "ERROR", "SKIPPED"] | None = None

    def model_post_init(self, context: Any) -> None:
        _check_metadata_value(self.model_extra or {})


class ClientMetadata(VideoMetadata):
    """What a client may set: the worker-owned AI fields are not writable."""

    aiTitle: None = None
    summary: None = None
    chapters: None = None
    aiGenerationStatus: None = None


class CreateVideoBody(CamelModel):
    name: SafeText | None = Field(None, min_length=1, max_length=500)
    public: StrictBool = True
    metadata: ClientMetadata | None = None


class TranscriptionStatusOut(CamelModel):
    transcription_status: TranscriptionStatus | None


class AiGenerationOut(CamelModel):
    ai_generation_status: AiGenerationStatus | None


class AnalyticsOut(CamelModel):
    count: int = Field(ge=0)


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_date(value: Any) -> Any:
    # Only YYYY-MM-DD: pydantic alone would also take a number of seconds as a date.
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError("must be an ISO date (YYYY-MM-DD)")
    return value


IsoDate = Annotated[Date, BeforeValidator(_iso_date)]


class AnalyticsQuery(VideoIdQuery):
    from_: IsoDate | None = Field(None, alias="from", description="first UTC day counted (inclusive)")
    to: IsoDate | None = Field(None, description="last UTC day counted (inclusive)")

    @field_validator("to")
    @classmethod
    def _not_before_from(cls, value: Date | None, info: ValidationInfo) -> Date | None:
        start = info.data.get("from_")
        if value is not None and start is not None and value < start:
            raise ValueError("must not be before from")
        return value


class DailyViewsQuery(VideoIdQuery):
    days: int = Field(30, ge=1, le=366, description="how many UTC days, ending today")


class DayCount(CamelModel):
    date: Date
    count: int = Field(ge=0)


class DailyViews(RootModel[list[DayCount]]):
    """Counted views per UTC day, oldest first; days without views are 0."""


class ViewBody(CamelModel):
    viewer_id: SafeText | None = Field(
        None, min_length=1, max_length=200, description="a stable id of the viewer (e.g. a cookie); else IP and User-Agent"
    )


CommentType = Literal["text", "emoji"]
MAX_COMMENT_CHARS = 5000


class CommentBody(CamelModel):
    type: CommentType
    content: SafeText = Field(min_length=1, max_length=MAX_COMMENT_CHARS, description="text, or a single emoji")
    timestamp: float | None = Field(None, ge=0, allow_inf_nan=False, description="seconds into the video")

    @field_validator("content")
    @classmethod
    def _fits_type(cls, value: str, info: ValidationInfo) -> str:
        kind = info.data.get("type")
        if kind == "emoji" and not emoji.is_emoji(value):
            raise ValueError("an emoji comment must be a single emoji")
        if kind == "text" and not value.strip():
            raise ValueError("must not be blank")
        return value


class Comment(CamelModel):
    id: str
    video_id: str
    author_id: str
    author_name: str
    type: CommentType
    content: str
    timestamp: float | None
    created_at: datetime


class CommentPage(CamelModel):
    comments: list[Comment]
    next_cursor: str | None


class CommentsQuery(VideoIdQuery):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = Field(None, pattern=r"^[0-9]{1,18}$", description="`nextCursor` of the previous page")
    type: CommentType | None = Field(None, description="only comments (text) or only reactions (emoji)")


class CommentIdQuery(QueryModel):
    comment_id: int = Field(ge=1, le=2**63 - 1, description="the comment's id")


class TranscriptionDetail(CamelModel):
    status: TranscriptionStatus | None
    attempt: int = Field(description="claims made in the current run")
    max_attempts: int
    error: str | None = Field(None, description="the last error's reason")
    note: str | None = Field(None, description="why a transcript is empty, when it is")
    engine: str | None = None
    progress: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class AiDetail(CamelModel):
    status: AiGenerationStatus | None
    attempt: int
    error: str | None = None
    note: str | None = None


class Video(CamelModel):
    id: str
    owner_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    public: bool
    source: Literal["local", "s3"]
    transcription_status: TranscriptionStatus | None
    metadata: dict[str, Any]
    total_comments: int
    total_reactions: int
    duration: float | None = None
    has_media: bool = False
    transcription_error: str | None = Field(None, description="the last transcription error, when one happened")
    transcription_progress: float | None = Field(
        None, ge=0, le=1, description="fraction of the media transcribed so far, while PROCESSING"
    )


class VideoPage(CamelModel):
    videos: list[Video]
    next_cursor: str | None


class ErrorOut(BaseModel):
    error: str
    message: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


def utc_iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
