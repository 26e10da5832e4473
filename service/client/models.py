"""The API's response models (service.models), read leniently: a field a newer server adds is
ignored rather than refused, so producers need not upgrade in step with the server."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from service.client.errors import CapvidProtocolError
from service.models import TranscriptionDetail, Video, VideoPage

M = TypeVar("M", bound=BaseModel)


class ClientVideo(Video):
    model_config = ConfigDict(extra="ignore")


class ClientTranscriptionDetail(TranscriptionDetail):
    model_config = ConfigDict(extra="ignore")


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CapvidProtocolError(f"unexpected {model.__name__} from the server: {exc}") from None


def parse_page(data: Any) -> VideoPage:
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise CapvidProtocolError("unexpected video page from the server")
    return VideoPage(videos=[parse(ClientVideo, item) for item in data["videos"]], next_cursor=data.get("nextCursor"))
