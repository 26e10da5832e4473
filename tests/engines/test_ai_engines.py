"""AI metadata engines: the offline extractive one, and the OpenAI-compatible one against a fake."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from config import Settings
from tests.fakes.openai_server import FakeOpenAI, prompt_of, timestamps_of
from workers.ai.engines import AIResult, Cue, TransientAIError, build_ai_engine
from workers.ai.engines.builtin import BuiltinEngine, generate_metadata
from workers.ai.engines.openai import AIEndpointError, OpenAIEngine
from workers.transcription.vtt import parse

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "fixtures" / "transcripts"
LONG_TALK = parse((TRANSCRIPTS / "long_talk.vtt").read_text(encoding="utf-8"))
LONG_TALK_DURATION = 823.0  # the video runs a little past the last cue
TRUE_BOUNDARIES: list[float] = json.loads((TRANSCRIPTS / "long_talk_boundaries.json").read_text(encoding="utf-8"))


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"ai_engine": "builtin"}
    values.update(overrides)
    return Settings(_env_file=None, **values)


def repeated_talk(total_seconds: float) -> list[Cue]:
    """long_talk over and over, shifted in time, until `total_seconds`: a long synthetic video."""
    period = LONG_TALK[-1].end + 5.0
    cues: list[Cue] = []
    offset = 0.0
    while offset < total_seconds:
        cues += [
            Cue(start=round(c.start + offset, 3), end=round(c.end + offset, 3), text=c.text)
            for c in LONG_TALK
            if c.start + offset < total_seconds
        ]
        offset += period
    return cues


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def assert_valid_chapters(result: AIResult, cues: list[Cue], duration: float) -> None:
    starts = [chapter.start for chapter in result.chapters]
    assert starts, "a video of two minutes or more gets chapters"
    assert starts[0] == 0.0
    assert starts == sorted(set(starts)), "ascending and distinct"
    assert all(0 <= start < duration for start in starts)
    cue_starts = {cue.start for cue in cues}
    assert all(start in cue_starts for start in starts[1:]), "each chapter starts where a cue starts"
    assert all(chapter.title.strip() and len(chapter.title) <= 80 for chapter in result.chapters)


def assert_good_title_and_summary(result: AIResult) -> None:
    assert result.title.strip() and len(result.title) <= 80
    assert 1 <= len(result.title.split()) <= 8
    assert result.summary.strip() and len(result.summary) <= 600


# --- builtin -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_talk_result() -> AIResult:
    return generate_metadata(LONG_TALK, LONG_TALK_DURATION)


async def test_builtin_engine_is_the_default_and_runs_async() -> None:
    engine = build_ai_engine(make_settings())
    assert isinstance(engine, BuiltinEngine) and engine.name == "builtin"
    try:
        result = await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    finally:
        await engine.aclose()
    assert result == generate_metadata(LONG_TALK, LONG_TALK_DURATION)


def test_builtin_title_and_summary_come_from_the_transcript(long_talk_result: AIResult) -> None:
    assert_good_title_and_summary(long_talk_result)
    transcript = normalized(" ".join(cue.text for cue in LONG_TALK))
    sentences = re.split(r"(?<=[.!?])\s+", long_talk_result.summary)
    assert len(sentences) >= 2
    for sentence in sentences:
        assert normalized(sentence) in transcript, sentence
    title_words = normalized(long_talk_result.title).split()
    assert all(word in transcript.split() for word in title_words if word != "and")


def test_builtin_chapters_are_valid(long_talk_result: AIResult) -> None:
    assert_valid_chapters(long_talk_result, LONG_TALK, LONG_TALK_DURATION)


def test_builtin_chapters_start_near_the_real_topic_changes(long_talk_result: AIResult) -> None:
    cue_index = {cue.start: index for index, cue in enumerate(LONG_TALK)}
    detected = [cue_index.get(chapter.start, 0) for chapter in long_talk_result.chapters]
    for boundary in TRUE_BOUNDARIES[1:]:
        true_index = cue_index[boundary]
        assert any(abs(index - true_index) <= 2 for index in detected), (boundary, long_talk_result.chapters)
    assert len(long_talk_result.chapters) <= 2 * len(TRUE_BOUNDARIES)


def test_builtin_chapter_titles_name_their_topic(long_talk_result: AIResult) -> None:
    titles = [chapter.title.lower() for chapter in long_talk_result.chapters]
    assert len(set(titles)) == len(titles)
    vocabulary = [
        "bread flour sourdough dough starter",
        "apollo moon lunar",
        "plant drainage pot soil",
        "money retirement",
    ]
    for title, words in zip(titles, vocabulary, strict=False):
        assert any(word in title for word in words.split()), (title, words)


def test_builtin_no_chapters_under_two_minutes() -> None:
    cues = [cue for cue in LONG_TALK if cue.end < 110]
    result = generate_metadata(cues, 110.0)
    assert result.chapters == []
    assert_good_title_and_summary(result)


def test_builtin_is_deterministic() -> None:
    first = generate_metadata(LONG_TALK, LONG_TALK_DURATION)
    second = generate_metadata([cue.model_copy() for cue in LONG_TALK], LONG_TALK_DURATION)
    assert first.model_dump() == second.model_dump()


def test_builtin_one_hour_transcript(record_property: Callable[[str, object], None]) -> None:
    cues = repeated_talk(3600.0)
    began = time.perf_counter()
    result = generate_metadata(cues, 3600.0)
    record_property("one_hour_seconds", round(time.perf_counter() - began, 3))  # reported, not asserted
    assert_good_title_and_summary(result)
    assert_valid_chapters(result, cues, 3600.0)
    assert 4 <= len(result.chapters) <= 3600 / 120


def test_builtin_transcript_without_punctuation() -> None:
    cues = [Cue(start=c.start, end=c.end, text=re.sub(r"[^\w\s']", "", c.text).lower()) for c in LONG_TALK]
    result = generate_metadata(cues, LONG_TALK_DURATION)
    assert_good_title_and_summary(result)
    assert_valid_chapters(result, cues, LONG_TALK_DURATION)
    cue_index = {cue.start: index for index, cue in enumerate(cues)}
    detected = [cue_index.get(chapter.start, 0) for chapter in result.chapters]
    for boundary in TRUE_BOUNDARIES[1:]:
        assert any(abs(index - cue_index[boundary]) <= 2 for index in detected), (boundary, result.chapters)


@pytest.mark.parametrize(
    ("texts", "duration"),
    [
        (["Hello world, this is a quick test of the new screen recorder."], 6.0),
        (["bread bread bread bread"] * 40, 200.0),
        (["so um yeah", "the the the", "okay"] * 30, 400.0),
        (["..."], 3.0),
        (["♪ ♪"] * 50, 250.0),
        ([" ".join(["word"] * 2000)], 900.0),
    ],
    ids=["one-sentence", "repeated-word", "stop-words-only", "punctuation-only", "music", "one-huge-cue"],
)
def test_builtin_odd_transcripts_still_give_metadata(texts: list[str], duration: float) -> None:
    step = duration / len(texts)
    cues = [Cue(start=i * step, end=(i + 1) * step, text=text) for i, text in enumerate(texts)]
    result = generate_metadata(cues, duration)
    assert result.title and result.summary and len(result.title) <= 80 and len(result.summary) <= 600
    if duration >= 120:
        assert_valid_chapters(result, cues, duration)
    else:
        assert result.chapters == []


def test_builtin_one_sentence_summary_is_that_sentence() -> None:
    text = "Hello world, this is a quick test of the new screen recorder."
    result = generate_metadata([Cue(start=0.0, end=6.0, text=text)], 6.0)
    assert result.summary == text
    assert result.title.lower() in text.lower()


def test_builtin_no_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        generate_metadata([Cue(start=0.0, end=1.0, text="  ")], 1.0)


# --- openai --------------------------------------------------------------------------------------

EngineFactory = Callable[..., Awaitable[OpenAIEngine]]


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI(api_key="k")


@pytest.fixture
async def make_engine(aiohttp_server: Any, fake: FakeOpenAI) -> AsyncIterator[EngineFactory]:
    """Engines pointed at `fake` (base URL path, retry options and settings by keyword), closed afterwards."""
    server = await aiohttp_server(fake.app())
    engines: list[OpenAIEngine] = []

    async def factory(
        *, path: str = "/v1", attempts: int = 3, max_retry_after: float = 30.0, **overrides: Any
    ) -> OpenAIEngine:
        values: dict[str, Any] = {
            "ai_engine": "openai",
            "ai_api_key": "k",
            "ai_base_url": str(server.make_url(path)),
            "ai_model": "fake-model",
            "ai_http_timeout_seconds": 5.0,
        }
        values.update(overrides)
        engine = OpenAIEngine(
            make_settings(**values), attempts=attempts, retry_delay=0.0, max_retry_after=max_retry_after
        )
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.aclose()


def is_map(request: dict[str, Any]) -> bool:
    return "This is part" in prompt_of(request)


def is_reduce(request: dict[str, Any]) -> bool:
    return "These are summaries" in prompt_of(request)


async def test_openai_single_call(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    def answer(_request: dict[str, Any]) -> dict[str, Any]:
        return {
            "title": '"Bread, Rockets, Plants and Money"',
            "summary": "A talk in four parts: sourdough, Apollo, houseplants and retirement savings.",
            "chapters": [
                {"title": "Apollo", "start": 227.2},
                {"title": "Sourdough bread", "start": 3.5},  # out of order, and not at 0
                {"title": "Houseplants", "start": "7:19.6"},  # minutes:seconds, as models sometimes do
                {"title": "Apollo again", "start": 228.0},  # the same cue once snapped: dropped
                {"title": "Retirement", "start": 625},
                {"title": "After the end", "start": 5000},
            ],
        }

    fake.answer = answer
    engine = await make_engine()
    result = await engine.generate(LONG_TALK, LONG_TALK_DURATION)

    assert result.title == "Bread, Rockets, Plants and Money"
    assert result.summary.startswith("A talk in four parts")
    assert [(c.title, c.start) for c in result.chapters] == [
        ("Sourdough bread", 0.0),
        ("Apollo", 227.18),
        ("Houseplants", 439.56),
        ("Retirement", 625.02),
    ]
    assert_valid_chapters(result, LONG_TALK, LONG_TALK_DURATION)
    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == "Bearer k"
    assert request.json["model"] == "fake-model"
    assert request.json["temperature"] == 0
    assert request.json["response_format"] == {"type": "json_object"}
    assert len(request.transcript_lines) == len(LONG_TALK)
    assert request.transcript_lines[40] == f"[227.2] {LONG_TALK[40].text}"


async def test_openai_no_chapters_under_two_minutes(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    engine = await make_engine()
    result = await engine.generate(LONG_TALK[:10], 60.0)
    assert result.chapters == []
    assert '"chapters": []' in fake.requests[0].prompt


async def test_openai_malformed_json_then_good(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.fail_next("malformed", times=2)
    engine = await make_engine()
    result = await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert result.title == "A Fake Video Title"
    assert len(fake.requests) == 3
    assert "not the JSON object asked for" in fake.requests[1].messages[-1]["content"]
    assert fake.requests[1].transcript_words == fake.requests[0].transcript_words


async def test_openai_always_malformed_is_transient(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.always_malformed = True
    engine = await make_engine()
    with pytest.raises(TransientAIError, match="model returned invalid JSON"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert len(fake.requests) == 3


async def test_openai_json_of_the_wrong_shape_is_invalid(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.answer = lambda _request: {"title": "", "chapters": [{"start": 3}]}
    engine = await make_engine()
    with pytest.raises(TransientAIError, match=r"model returned invalid JSON: .*(title|summary)"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)


async def test_openai_code_fenced_json_is_accepted(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.answer = lambda _request: '```json\n{"title": "Fenced", "summary": "Still JSON."}\n```'
    engine = await make_engine()
    result = await engine.generate(LONG_TALK[:10], 60.0)
    assert (result.title, result.summary) == ("Fenced", "Still JSON.")


async def test_openai_null_chapters_mean_none(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.answer = lambda _request: {"title": "T", "summary": "S.", "chapters": None}
    engine = await make_engine()
    result = await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert result.chapters == [] and len(fake.requests) == 1


async def test_openai_429_is_retried(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.fail_next("429", retry_after="0")
    engine = await make_engine()
    result = await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert result.title == "A Fake Video Title"
    assert len(fake.requests) == 2


async def test_openai_429_until_gave_up_is_transient(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.fail_next("429", times=5, retry_after="0")
    engine = await make_engine()
    with pytest.raises(TransientAIError, match="429"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert len(fake.requests) == 3


async def test_openai_429_with_a_long_retry_after_is_left_to_the_job(
    make_engine: EngineFactory, fake: FakeOpenAI
) -> None:
    fake.fail_next("429", retry_after="3600")
    engine = await make_engine()
    with pytest.raises(TransientAIError, match="retry after 3600 s"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert len(fake.requests) == 1


async def test_openai_server_errors(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.fail_next("500")
    engine = await make_engine()
    assert (await engine.generate(LONG_TALK, LONG_TALK_DURATION)).title == "A Fake Video Title"
    fake.fail_next("503", times=3)
    with pytest.raises(TransientAIError, match="HTTP 503"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)


async def test_openai_unexpected_body_is_transient(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.fail_next("empty_choices", times=3)
    engine = await make_engine()
    with pytest.raises(TransientAIError, match="without a chat completion"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)


async def test_openai_timeout_is_transient(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    fake.fail_next("hang", times=2)
    engine = await make_engine(ai_http_timeout_seconds=0.2, attempts=2)
    with pytest.raises(TransientAIError, match=r"no answer within 0\.2 s"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert len(fake.requests) == 2


async def test_openai_unreachable_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(ai_engine="openai", ai_api_key="k", ai_base_url=f"http://127.0.0.1:{port}/v1")
    engine = OpenAIEngine(settings, retry_delay=0.0)
    try:
        with pytest.raises(TransientAIError, match="unreachable"):
            await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    finally:
        await engine.aclose()


async def test_openai_wrong_key_is_final(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    engine = await make_engine(ai_api_key="wrong")
    with pytest.raises(AIEndpointError, match="refused the API key \\(HTTP 401\\)") as raised:
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)
    assert not isinstance(raised.value, TransientAIError)
    assert len(fake.requests) == 1


async def test_openai_wrong_url_is_final(make_engine: EngineFactory) -> None:
    engine = await make_engine(path="/v2")
    with pytest.raises(AIEndpointError, match="not found \\(HTTP 404\\)"):
        await engine.generate(LONG_TALK, LONG_TALK_DURATION)


async def test_openai_long_transcript_is_map_reduced(make_engine: EngineFactory, fake: FakeOpenAI) -> None:
    cues = repeated_talk(7200.0)
    total_words = sum(len(cue.text.split()) for cue in cues)

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if is_reduce(request):
            return {"title": "Four Topics, Many Times", "summary": "The same talk, again and again."}
        assert is_map(request)
        stamps = timestamps_of(request)
        return {
            "summary": f"Part from {stamps[0]:g} s.",
            "chapters": [{"title": f"From {stamps[0]:g}", "start": stamps[0]}, {"title": "Late", "start": stamps[-1]}],
        }

    fake.answer = answer
    engine = await make_engine(ai_chunk_words=3000)
    result = await engine.generate(cues, 7200.0)

    maps, reduce = fake.requests[:-1], fake.requests[-1]
    assert len(maps) >= -(-total_words // 3000) and len(maps) > 1
    assert all(is_map(r.json) for r in maps) and is_reduce(reduce.json)
    assert all(0 < r.transcript_words <= 3000 for r in maps)
    assert sum(r.transcript_words for r in maps) == total_words, "every word is sent once"
    assert [line for r in maps for line in r.transcript_lines][-1].startswith(f"[{cues[-1].start:.1f}]")
    assert LONG_TALK[5].text not in reduce.prompt, "the reduce call gets summaries, not the transcript"
    assert len(reduce.prompt.split()) < 1500
    for number in range(1, len(maps) + 1):
        assert f"Part {number}: Part from" in reduce.prompt

    assert result.title == "Four Topics, Many Times"
    assert_valid_chapters(result, cues, 7200.0)
    first_stamps = [r.timestamps[0] for r in maps]
    assert len(result.chapters) == 2 * len(maps)
    assert [round(c.start, 1) for c in result.chapters[2::2]] == first_stamps[1:]


async def test_build_ai_engine_openai_needs_no_running_request() -> None:
    engine = build_ai_engine(make_settings(ai_engine="openai", ai_api_key="k"))
    assert isinstance(engine, OpenAIEngine) and engine.name == "openai"
    await engine.aclose()  # nothing was opened: closing is still fine
