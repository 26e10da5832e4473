"""WebVTT: written from engine segments, read back into cues for AI generation."""

from __future__ import annotations

import re
from collections.abc import Iterable

from workers.ai.engines import Cue
from workers.transcription.engines import Segment

HEADER = "WEBVTT\n"
_TIMING = re.compile(
    r"^\s*(?P<start>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{3})\s+-->\s+(?P<end>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{3})"
)


def format_timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def parse_timestamp(text: str) -> float:
    parts = text.replace(",", ".").split(":")
    seconds = float(parts[-1])
    minutes = int(parts[-2])
    hours = int(parts[-3]) if len(parts) == 3 else 0
    return hours * 3600 + minutes * 60 + seconds


def render(segments: Iterable[Segment]) -> str:
    """A VTT document; segments without words are dropped, an empty list gives the header alone."""
    blocks = [HEADER]
    index = 0
    for segment in segments:
        text = " ".join(segment.text.split())
        if not text:
            continue
        index += 1
        end = max(segment.end, segment.start)
        blocks.append(f"\n{index}\n{format_timestamp(segment.start)} --> {format_timestamp(end)}\n{text}\n")
    return "".join(blocks)


def parse(document: str) -> list[Cue]:
    cues: list[Cue] = []
    lines = document.splitlines()
    i = 0
    while i < len(lines):
        match = _TIMING.match(lines[i])
        i += 1
        if not match:
            continue
        text_lines = []
        while i < len(lines) and lines[i].strip():
            text_lines.append(lines[i].strip())
            i += 1
        text = " ".join(text_lines)
        if text:
            cues.append(Cue(start=parse_timestamp(match["start"]), end=parse_timestamp(match["end"]), text=text))
    return cues
