"""A text/event-stream decoder, as the WHATWG HTML standard specifies it (§9.2.6).

Small on purpose: the client needs no more than bytes in, events out. Lines end with CRLF, LF
or CR (a CR at the end of a chunk may be the first half of a CRLF); `data` lines accumulate,
comments are dropped, an event without data is not dispatched, `id` persists across events
and `retry` sets the reconnection delay.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str  # the stream's last event id when this event was dispatched ("" when none was sent)


class SSEDecoder:
    """Feed bytes as they arrive; get the events completed by them."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._id_buffer = ""
        # The id to resume from: the last `id` of a *completed* event (set at each blank line),
        # so a connection lost mid-event resumes before that event, not after it.
        self.last_event_id = ""
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        text = self._decoder.decode(chunk)
        if not self._started and text:
            text = text.removeprefix("\ufeff")  # one BOM, at the very start of the stream only
            self._started = True
        self._buffer += text
        events: list[ServerSentEvent] = []
        start = 0
        buffer = self._buffer
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            end = min(i for i in (cr, lf) if i >= 0) if (cr >= 0 or lf >= 0) else -1
            if end < 0:
                break
            if buffer[end] == "\r":
                if end + 1 == len(buffer):
                    break  # wait: an LF in the next chunk belongs to this line ending
                step = 2 if buffer[end + 1] == "\n" else 1
            else:
                step = 1
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = end + step
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (heartbeats)
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id_buffer
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=self.last_event_id)


async def aiter_sse(chunks: AsyncIterable[bytes], decoder: SSEDecoder | None = None) -> AsyncGenerator[ServerSentEvent, None]:
    """Events from a byte stream; an event left incomplete at the end of the stream is dropped."""
    decoder = decoder or SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
