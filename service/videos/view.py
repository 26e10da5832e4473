"""A `videos` row as the Video object clients see."""

from __future__ import annotations

from datetime import timezone

from service.db import Row
from service.models import Video


def video_from_row(row: Row) -> Video:
    # Unset keys are left out of metadata rather than sent as null.
    metadata = {key: value for key, value in row["metadata"].items() if value is not None}
    return Video(
        id=row["id"],
        owner_id=str(row["owner_id"]),
        name=row["name"],
        created_at=row["created_at"].astimezone(timezone.utc),
        updated_at=row["updated_at"].astimezone(timezone.utc),
        public=row["public"],
        source=row["source"],
        transcription_status=row["transcription_status"],
        metadata=metadata,
        total_comments=row["total_comments"],
        total_reactions=row["total_reactions"],
        duration=row["duration"],
        has_media=row["has_media"],
        transcription_error=row["transcription_error"],
        transcription_progress=row["transcription_progress"],
    )
