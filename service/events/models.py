"""The event stream's query."""

from __future__ import annotations

from pydantic import Field

from service.models import VideoIdQuery

MAX_EVENT_ID = 2**63 - 1


class EventsQuery(VideoIdQuery):
    last_event_id: int | None = Field(
        None,
        ge=0,
        le=MAX_EVENT_ID,
        description="resume after this event id, for clients that cannot send the Last-Event-ID header "
        "(the header wins when both are given)",
    )
