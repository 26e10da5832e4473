"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Groq, Ollama, vLLM, LM Studio...

One call for a transcript that fits in `ai_chunk_words`; otherwise map-reduce, so a two-hour
video fits the model's context: each chunk (timestamped lines) gives a short summary and its
chapters with absolute start times, then one last call turns the chunk summaries into the
title and summary. Chapters are then cleaned up here rather than trusted: snapped to cue
starts, inside the video, ascending, distinct, the first at 0, none under two minutes.

Failures: 429, 5xx, connection errors, timeouts and answers that are not the JSON asked for
are retried a couple of times within the call, then raised as `TransientAIError` for the
job's backoff; a refused key, an unknown model or URL, or a rejected request raise
`AIEndpointError`, which is final.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import re
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

import aiohttp
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from config import Settings
from workers.ai.engines import AIResult, Chapter, Cue, TransientAIError

MIN_CHAPTERED_SECONDS = 120.0  # Cap gives no chapters to shorter videos
TITLE_MAX_CHARS = 80
SUMMARY_MAX_CHARS = 600

_SYSTEM_PROMPT = (
    "You write metadata for a video from its timed transcript. Each transcript line starts with "
    "the time it is spoken, in seconds from the start of the video, in square brackets. "
    "Reply with a single JSON object and nothing else: no prose, no code fences. "
    "Write in the language of the transcript."
)
_TITLE_RULE = '"title": 3 to 8 words, at most 80 characters, naming what the video is about'
_SUMMARY_RULE = '"summary": 2 to 4 sentences, at most 600 characters, saying what the video covers'
_CHAPTERS_RULE = (
    '"chapters": where the topic changes, in order; "start" is a number of seconds copied from the '
    'timestamp of the line where that topic starts; "title" is 2 to 6 words; at most one chapter '
    "per two minutes"
)


class AIEndpointError(Exception):
    """The endpoint refused the request in a way retrying will not fix: final."""


class _Retryable(Exception):
    """A failure worth another try; `delay` is what the server asked us to wait, if it did."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


# --- answers ---------------------------------------------------------------------------------


def _seconds(value: object) -> object:
    """Models sometimes answer "1:15" or "00:01:15.5" where seconds were asked for."""
    if isinstance(value, str) and ":" in value:
        parts = value.strip().split(":")
        try:
            numbers = [float(part) for part in parts]
        except ValueError:
            return value
        total = 0.0
        for number in numbers:
            total = total * 60 + number
        return total
    return value


def _no_chapters_as_empty(value: object) -> object:
    return [] if value is None else value  # "chapters": null is a model's way of saying none


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Seconds = Annotated[float, BeforeValidator(_seconds), Field(allow_inf_nan=False)]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ChapterAnswer(_Answer):
    title: Text
    start: Seconds


Chapters = Annotated[list[_ChapterAnswer], BeforeValidator(_no_chapters_as_empty)]


class _FullAnswer(_Answer):
    title: Text
    summary: Text
    chapters: Chapters = Field(default_factory=list)


class _ChunkAnswer(_Answer):
    summary: Text
    chapters: Chapters = Field(default_factory=list)


class _CombinedAnswer(_Answer):
    title: Text
    summary: Text


AnswerT = TypeVar("AnswerT", bound=_Answer)

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def _parse_answer(content: str, model: type[AnswerT]) -> AnswerT:
    """The model's JSON; raises ValueError saying what was wrong with it."""
    fenced = _FENCE.match(content)  # some local models wrap JSON in a code fence regardless
    text = fenced.group(1) if fenced else content
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{exc.msg} at character {exc.pos} of {_excerpt(text)}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'answer'}: {error['msg']}" for error in exc.errors()[:3]
        )
        raise ValueError(f"{problems} in {_excerpt(text)}") from None


def _excerpt(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


# --- transcript chunks -----------------------------------------------------------------------


def _lines(cues: Sequence[Cue], budget: int) -> list[tuple[str, int]]:
    """Timestamped lines with their word counts; a cue longer than `budget` words is split."""
    lines = []
    for cue in cues:
        words = cue.text.split()
        for i in range(0, len(words), budget):
            piece = words[i : i + budget]
            lines.append((f"[{cue.start:.1f}] {' '.join(piece)}", len(piece)))
    return lines


def chunk_transcript(cues: Sequence[Cue], budget: int) -> list[str]:
    """Consecutive blocks of timestamped lines, each with at most `budget` transcript words."""
    chunks: list[list[str]] = [[]]
    words = 0
    for line, count in _lines(cues, budget):
        if chunks[-1] and words + count > budget:
            chunks.append([])
            words = 0
        chunks[-1].append(line)
        words += count
    return ["\n".join(lines) for lines in chunks if lines]


# --- prompts ---------------------------------------------------------------------------------


def _rules(*rules: str) -> str:
    return "\n".join(f"- {rule};" for rule in rules)


def _full_prompt(transcript: str, duration: float) -> str:
    chaptered = duration >= MIN_CHAPTERED_SECONDS
    shape = '{"title": "...", "summary": "...", "chapters": [{"title": "...", "start": 0}]}'
    chapters = _CHAPTERS_RULE + ", the first starting at 0" if chaptered else '"chapters": [] (too short for chapters)'
    return (
        f"The video is {duration:.0f} seconds long. Return {shape} where\n"
        f"{_rules(_TITLE_RULE, _SUMMARY_RULE, chapters)}\n\nTranscript:\n{transcript}"
    )


def _chunk_prompt(transcript: str, duration: float, part: int, parts: int) -> str:
    shape = '{"summary": "...", "chapters": [{"title": "...", "start": 0}]}'
    first = ", the first starting at 0" if part == 1 else ", only for topics that start within this part"
    return (
        f"This is part {part} of {parts} of the transcript of a video {duration:.0f} seconds long. "
        f"Return {shape} where\n"
        + _rules(
            '"summary": 2 or 3 sentences, at most 400 characters, on what this part covers', _CHAPTERS_RULE + first
        )
        + f"\n\nTranscript, part {part} of {parts}:\n{transcript}"
    )


def _combine_prompt(summaries: Sequence[str], chapters: Sequence[Chapter], duration: float) -> str:
    shape = '{"title": "...", "summary": "..."}'
    parts = "\n".join(f"Part {number}: {summary}" for number, summary in enumerate(summaries, 1))
    outline = "\n".join(f"[{chapter.start:.1f}] {chapter.title}" for chapter in chapters) or "(none)"
    return (
        f"These are summaries of the {len(summaries)} consecutive parts of the transcript of a video "
        f"{duration:.0f} seconds long, and its chapters. Return {shape} for the whole video where\n"
        f"{_rules(_TITLE_RULE, _SUMMARY_RULE)}\n\nSummaries:\n{parts}\n\nChapters:\n{outline}"
    )


# --- clean-up --------------------------------------------------------------------------------


def _unquote(text: str) -> str:
    """Models like to put titles in quotes."""
    text = " ".join(text.split())
    if len(text) >= 2 and text[0] in "\"'“«" and text[-1] in "\"'”»":
        return text[1:-1].strip() or text
    return text


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    sentence_end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if sentence_end >= limit // 2:
        return head[: sentence_end + 1]
    return head.rsplit(" ", 1)[0].rstrip(" ,;:-") + "…"


def tidy_chapters(chapters: Sequence[_ChapterAnswer | Chapter], cues: Sequence[Cue], duration: float) -> list[Chapter]:
    """What players and Cap expect, whatever the model said.

    Starts inside the video, each moved to the nearest cue start, ascending and distinct, the
    first at 0; consecutive chapters with the same title are one; none under two minutes.
    """
    if duration < MIN_CHAPTERED_SECONDS:
        return []
    cue_starts = sorted({cue.start for cue in cues if 0 <= cue.start < duration})
    tidy: list[Chapter] = []
    for chapter in sorted(chapters, key=lambda c: c.start):
        if not 0 <= chapter.start < duration:
            continue
        start = 0.0 if not tidy else _nearest(cue_starts, chapter.start)
        title = _clip(_unquote(chapter.title), TITLE_MAX_CHARS)
        if not title or (tidy and (start <= tidy[-1].start or title.lower() == tidy[-1].title.lower())):
            continue
        tidy.append(Chapter(title=title, start=start))
    return tidy


def _nearest(values: Sequence[float], target: float) -> float:
    if not values:
        return target
    i = bisect_left(values, target)
    neighbours = values[max(0, i - 1) : i + 1]
    return min(neighbours, key=lambda value: (abs(value - target), value))


# --- engine ----------------------------------------------------------------------------------


class OpenAIEngine:
    name = "openai"

    def __init__(
        self,
        settings: Settings,
        *,
        attempts: int = 3,
        retry_delay: float = 1.0,
        max_retry_after: float = 30.0,
    ) -> None:
        """`attempts` per request, for each kind of failure; `retry_delay` doubles each time.

        A 429 whose Retry-After exceeds `max_retry_after` is not waited for here: the job's
        own backoff is the better place for long waits.
        """
        self._settings = settings
        self._url = settings.ai_base_url.rstrip("/") + "/chat/completions"
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay
        self._max_retry_after = max_retry_after
        self._session: aiohttp.ClientSession | None = None

    async def generate(self, cues: list[Cue], duration: float) -> AIResult:
        ordered = sorted((cue for cue in cues if cue.text.strip()), key=lambda cue: cue.start)
        if not ordered:
            raise ValueError("the transcript has no text to summarise")
        chunks = chunk_transcript(ordered, self._settings.ai_chunk_words)
        if len(chunks) == 1:
            answer = await self._complete(_full_prompt(chunks[0], duration), _FullAnswer)
            title, summary, chapters = answer.title, answer.summary, tidy_chapters(answer.chapters, ordered, duration)
        else:
            title, summary, chapters = await self._map_reduce(chunks, ordered, duration)
        return AIResult(
            title=_clip(_unquote(title), TITLE_MAX_CHARS), summary=_clip(summary, SUMMARY_MAX_CHARS), chapters=chapters
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _map_reduce(
        self, chunks: Sequence[str], cues: Sequence[Cue], duration: float
    ) -> tuple[str, str, list[Chapter]]:
        # One chunk at a time: gentler on rate limits, and a background job is not in a hurry.
        summaries: list[str] = []
        proposed: list[_ChapterAnswer] = []
        for part, chunk in enumerate(chunks, 1):
            answer = await self._complete(_chunk_prompt(chunk, duration, part, len(chunks)), _ChunkAnswer)
            summaries.append(answer.summary)
            proposed.extend(answer.chapters)
        chapters = tidy_chapters(proposed, cues, duration)
        combined = await self._complete(_combine_prompt(summaries, chapters, duration), _CombinedAnswer)
        return combined.title, combined.summary, chapters

    async def _complete(self, prompt: str, model: type[AnswerT]) -> AnswerT:
        """One answer of shape `model`, retrying transient failures and answers that do not parse."""
        messages = [{"role": "system", "content": _SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        failures = 0
        invalid = 0
        while True:
            try:
                content = await self._post(messages)
            except _Retryable as exc:
                failures += 1
                if failures >= self._attempts:
                    raise TransientAIError(f"{exc} (gave up after {failures} attempts)") from None
                await asyncio.sleep(exc.delay if exc.delay is not None else self._backoff(failures))
                continue
            try:
                return _parse_answer(content, model)
            except ValueError as exc:
                invalid += 1
                if invalid >= self._attempts:
                    raise TransientAIError(f"model returned invalid JSON: {exc}") from None
                # Saying what was wrong makes a second answer at temperature 0 differ from the first.
                messages = [
                    *messages[:2],
                    {
                        "role": "user",
                        "content": f"Your previous answer was not the JSON object asked for ({exc}). "
                        "Reply again with only that JSON object.",
                    },
                ]

    def _backoff(self, failures: int) -> float:
        return self._retry_delay * 2 ** (failures - 1)

    async def _post(self, messages: list[dict[str, str]]) -> str:
        payload: dict[str, Any] = {
            "model": self._settings.ai_model,
            "messages": messages,
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        try:
            async with self._client().post(self._url, json=payload) as response:
                body = (await response.read()).decode("utf-8", errors="replace")
                if response.status != 200:
                    raise self._status_error(response.status, response.headers, body)
                return _message_content(body)
        except TimeoutError:  # aiohttp raises subclasses of it for every kind of timeout
            raise _Retryable(
                f"AI endpoint gave no answer within {self._settings.ai_http_timeout_seconds:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise _Retryable(f"AI endpoint unreachable: {type(exc).__name__}: {exc}") from None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, and reused for every call.
        if self._session is None or self._session.closed:
            headers = {}
            if self._settings.ai_api_key is not None:
                headers["Authorization"] = f"Bearer {self._settings.ai_api_key.get_secret_value()}"
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self._settings.ai_http_timeout_seconds)
            )
        return self._session

    def _status_error(self, status: int, headers: Any, body: str) -> Exception:
        detail = _error_detail(body)
        where = f"{self._url} (model {self._settings.ai_model!r})"
        if status == 429:
            delay = _retry_after(headers.get("Retry-After"))
            if delay is not None and delay > self._max_retry_after:
                return TransientAIError(f"AI endpoint rate limited (HTTP 429), retry after {delay:g} s: {detail}")
            return _Retryable(f"AI endpoint rate limited (HTTP 429): {detail}", delay)
        if status in (408, 409, 425) or status >= 500:
            return _Retryable(f"AI endpoint failed (HTTP {status}): {detail}")
        if status in (401, 403):
            return AIEndpointError(f"AI endpoint {where} refused the API key (HTTP {status}): {detail}")
        if status == 404:
            return AIEndpointError(f"AI endpoint or model not found (HTTP 404) at {where}: {detail}")
        return AIEndpointError(f"AI endpoint {where} rejected the request (HTTP {status}): {detail}")


def _message_content(body: str) -> str:
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise _Retryable(f"AI endpoint answered without a chat completion: {_excerpt(body)}") from None
    if not isinstance(content, str):
        raise _Retryable(f"AI endpoint answered without message content: {_excerpt(body)}")
    return content


def _error_detail(body: str) -> str:
    """OpenAI-style {"error": {"message": ...}} when present, else the start of the body."""
    try:
        error = json.loads(body).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if isinstance(message, str) and message:
            return message[:300]
    except (ValueError, AttributeError):
        pass
    return body.strip()[:300] or "(empty body)"


def _retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
