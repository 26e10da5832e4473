"""What the client raises: every failure is a CapvidError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.client.events import VideoState


class CapvidError(Exception):
    """Any failure of a client call."""


class CapvidConfigError(CapvidError):
    """No token (or an unusable base URL) was given or found."""


class CapvidApiError(CapvidError):
    """The API answered with an error status; `body` is its JSON error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.error = str(body.get("error", "")) or f"HTTP {status}"
        self.message: str | None = body.get("message") if isinstance(body.get("message"), str) else None
        super().__init__(f"{status} {self.error}" + (f": {self.message}" if self.message else ""))


class CapvidConnectionError(CapvidError):
    """The server could not be reached, or the connection broke and could not be resumed."""


class CapvidProtocolError(CapvidError):
    """The server sent something this client cannot read."""


class WaitFailed(CapvidError):
    """The awaited status can no longer be reached (e.g. ERROR while waiting for COMPLETE)."""

    def __init__(self, message: str, state: VideoState) -> None:
        super().__init__(message)
        self.state = state


class VideoDeleted(WaitFailed):
    """The video was deleted while we were waiting."""
