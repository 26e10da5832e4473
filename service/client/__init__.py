"""A typed async client of the capvid Video API, for background job producers and scripts.

    from service.client import CapvidClient

See `CapvidClient` (service/client/client.py); `capvid video ...` is built on it.
"""

from service.client.client import CapvidClient, Progress
from service.client.config import DEFAULT_URL, resolve_connection
from service.client.errors import (
    CapvidApiError,
    CapvidConfigError,
    CapvidConnectionError,
    CapvidError,
    CapvidProtocolError,
    VideoDeleted,
    WaitFailed,
)
from service.client.events import (
    AiEvent,
    DeletedEvent,
    ProgressEvent,
    StateEvent,
    TranscriptionEvent,
    VideoEvent,
    VideoState,
)

__all__ = [
    "DEFAULT_URL",
    "AiEvent",
    "CapvidApiError",
    "CapvidClient",
    "CapvidConfigError",
    "CapvidConnectionError",
    "CapvidError",
    "CapvidProtocolError",
    "DeletedEvent",
    "Progress",
    "ProgressEvent",
    "StateEvent",
    "TranscriptionEvent",
    "VideoDeleted",
    "VideoEvent",
    "VideoState",
    "WaitFailed",
    "resolve_connection",
]
