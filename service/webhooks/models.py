"""Webhook requests and responses (camelCase JSON, documented in /api/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from service.models import CamelModel, QueryModel, SafeText
from service.webhooks.urls import MAX_URL_CHARS, RefusedUrl, parse_url

# `<kind>.<status>` of every state transition (see video_events and migration 0004), or "*".
EventType = Literal[
    "transcription.processing",
    "transcription.complete",
    "transcription.error",
    "ai.queued",
    "ai.processing",
    "ai.complete",
    "ai.error",
    "ai.skipped",
    "video.deleted",
    "*",
]
DeliveryStatus = Literal["pending", "delivered", "failed", "cancelled"]
MAX_EVENT_TYPES = 20


class WebhookBody(CamelModel):
    url: SafeText = Field(
        max_length=MAX_URL_CHARS,
        description="http:// or https:// URL; loopback, private and link-local addresses are refused "
        "unless WEBHOOK_ALLOW_PRIVATE_URLS is set",
        examples=["https://example.com/capvid-hook"],
    )
    events: list[EventType] = Field(
        min_length=1, max_length=MAX_EVENT_TYPES, description='the event types to receive; "*" for all'
    )

    @field_validator("url")
    @classmethod
    def _url_form(cls, value: str) -> str:
        # Stored as it will be called: scheme and host lower-cased, a Unicode host in IDNA form.
        try:
            return str(parse_url(value))
        except RefusedUrl as exc:
            raise ValueError(str(exc)) from None

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class Webhook(CamelModel):
    id: str
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None = Field(None, description="set when the receiver answered 410 Gone")
    disabled_reason: str | None = None


class NewWebhook(Webhook):
    secret: str = Field(description="the signing secret (whsec_…): shown in this response only")


class WebhookList(CamelModel):
    webhooks: list[Webhook]


class WebhookIdQuery(QueryModel):
    webhook_id: int = Field(ge=1, le=2**63 - 1, description="the webhook's id")


class DeliveriesQuery(QueryModel):
    webhook_id: int | None = Field(None, ge=1, le=2**63 - 1, description="only this webhook's deliveries")
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = Field(None, pattern=r"^[0-9]{1,18}$", description="`nextCursor` of the previous page")


class Delivery(CamelModel):
    id: str
    webhook_id: str
    event_id: str = Field(description="the same on every attempt (receivers drop duplicates by it)")
    event_type: str
    video_id: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = Field(None, description="the receiver's last HTTP status, if it answered")
    last_error: str | None = None
    created_at: datetime
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = Field(None, description="when the next attempt is due (pending only)")
    finished_at: datetime | None = None


class DeliveryPage(CamelModel):
    deliveries: list[Delivery]
    next_cursor: str | None
