"""The offline engine: extractive metadata from the transcript alone, no model, no network.

- chapters: TextTiling over cues (TF-IDF cohesion of the minute or so before and after each
  cue), boundaries at the deepest valleys, snapped to a sentence start, at least a minute apart;
- summary: sentences scored by TF-IDF cosine to their chapter's centroid; the best sentence of
  each of the largest chapters (or the best non-redundant ones when there is a single part);
- titles: YAKE key phrases (of the video, of each chapter), preferring phrases whose words the
  speaker keeps using.

Deterministic (every tie breaks by position) and close to linear in the transcript's length:
a one-hour talk takes a few tenths of a second, run in a thread.
"""

from __future__ import annotations

import asyncio
import math
import re
import statistics
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import yake
from segtok.segmenter import split_single

from config import Settings
from workers.ai.engines import AIResult, Chapter, Cue

MIN_CHAPTERED_SECONDS = 120.0  # Cap gives no chapters to shorter videos
TITLE_MAX_CHARS = 80
TITLE_MAX_WORDS = 8
SUMMARY_MAX_CHARS = 600
SUMMARY_SENTENCES = 3

# A "sentence" longer than this is run-on ASR text without punctuation: we cut it into pieces.
_MAX_SENTENCE_WORDS = 60
_PIECE_WORDS = 30
# How much of a long passage YAKE reads (see `_extract`).
_TITLE_SAMPLE_WORDS = 2000
_CHAPTER_SAMPLE_WORDS = 300
# Pairs of summary sentences more similar than this say the same thing twice.
_REDUNDANT_COSINE = 0.35

# Spoken fillers: YAKE's list is written for edited text, transcripts also contain these.
_SPOKEN_FILLERS = frozenset({"um", "uh", "erm", "hmm", "mm", "yeah", "gonna", "wanna", "gotta", "kinda", "sorta"})
# Spoken numbers ("nineteen sixty nine") are frequent in transcripts and make poor titles.
_NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred thousand million billion".split()
)
_TITLE_SMALL_WORDS = frozenset("a an and as at but by for from in into nor of on or per the to vs via with".split())

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")


@cache
def _stopwords() -> frozenset[str]:
    # Reuse YAKE's English list so key phrases and our similarity measures agree on what is noise.
    return frozenset(yake.KeywordExtractor(lan="en").stopword_set) | _SPOKEN_FILLERS


def _normalize(word: str) -> str:
    """Fold plurals and possessives so "plants", "plant's" and "plant" count as one term."""
    word = word.replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _terms(text: str) -> list[str]:
    stop = _stopwords()
    return [
        _normalize(word)
        for word in _WORD.findall(text.lower())
        if len(word) > 2 and word not in stop and word not in _NUMBER_WORDS
    ]


# --- vectors ---------------------------------------------------------------------------------

Vector = dict[str, float]


def _idf(documents: Sequence[Sequence[str]]) -> dict[str, float]:
    df: Counter[str] = Counter()
    for terms in documents:
        df.update(set(terms))
    n = len(documents)
    return {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in df.items()}


def _tfidf(terms: Sequence[str], idf: dict[str, float]) -> Vector:
    return {term: count * idf.get(term, 1.0) for term, count in Counter(terms).items()}


def _unit(vector: Vector) -> Vector:
    norm = math.sqrt(sum(value * value for value in vector.values()))
    return {term: value / norm for term, value in vector.items()} if norm else {}


def _dot(a: Vector, b: Vector) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(value * b.get(term, 0.0) for term, value in a.items())


def _cosine(a: Vector, b: Vector) -> float:
    norms = math.sqrt(_dot(a, a) * _dot(b, b))
    return _dot(a, b) / norms if norms else 0.0


def _add(total: Vector, vector: Vector) -> None:
    for term, value in vector.items():
        total[term] = total.get(term, 0.0) + value


# --- text helpers ----------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a sentence end if one is late enough, else a word."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    sentence_end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if sentence_end >= limit // 2:
        return head[: sentence_end + 1]
    return head.rsplit(" ", 1)[0].rstrip(" ,;:-") + "…"


def _as_sentence(text: str) -> str:
    """ASR pieces may lack capitals and final punctuation; a summary should not."""
    text = text.strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    if text and not _SENTENCE_END.search(text):
        text = text.rstrip(",;:-") + "."
    return text


def _word_pieces(text: str, size: int) -> list[str]:
    words = text.split()
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def _sentences(cues: Sequence[Cue]) -> list[str]:
    """Sentences when the transcript is punctuated, cue texts when it is not (raw ASR)."""
    text = " ".join(cue.text for cue in cues)
    sentences = [s.strip() for s in split_single(text) if s.strip()]
    total_words = sum(len(s.split()) for s in sentences)
    run_on_words = sum(n for s in sentences if (n := len(s.split())) > _MAX_SENTENCE_WORDS)
    if total_words and run_on_words * 2 > total_words:
        sentences = [cue.text.strip() for cue in cues if cue.text.strip()]
    pieces: list[str] = []
    for sentence in sentences:
        if len(sentence.split()) > _MAX_SENTENCE_WORDS:
            pieces.extend(_word_pieces(sentence, _PIECE_WORDS))
        else:
            pieces.append(sentence)
    return pieces


# --- key phrases and titles ------------------------------------------------------------------


def _is_number(word: str) -> bool:
    return word in _NUMBER_WORDS or word.replace(".", "").replace(",", "").isdigit()


def _key_phrases(text: str, top: int) -> list[str]:
    # A fresh extractor per call: YAKE keeps caches on the instance, and calls may run in parallel threads.
    extractor = yake.KeywordExtractor(lan="en", n=3, top=top, stopwords=set(_stopwords()))
    phrases: list[str] = []
    for phrase, _score in extractor.extract_keywords(text):
        words = _drop_repeats(phrase.split())
        lowered = [word.lower() for word in words]
        # "ten thousand dollars", "Apollo eleven": spoken numbers at either end make poor titles.
        if not words or _is_number(lowered[0]) or _is_number(lowered[-1]):
            continue
        cleaned = " ".join(words)
        if cleaned.lower() not in (p.lower() for p in phrases):
            phrases.append(cleaned)
    return phrases


def _drop_repeats(words: Sequence[str]) -> list[str]:
    """ "bread bread bread" -> "bread": stutters and ASR loops are not phrases."""
    return [word for i, word in enumerate(words) if i == 0 or word.lower() != words[i - 1].lower()]


def _ranked_phrases(sample: str, counts: Counter[str], top: int) -> list[str]:
    """YAKE's order, but multi-word phrases made of recurring words first, then recurring words.

    YAKE's position feature favours one-off phrases from a passage's first lines ("tips on
    caring"); a phrase whose every word the speaker keeps using is what the passage is about.
    `counts` are the term counts of the whole passage, `sample` what YAKE reads of it.
    """

    def rank(item: tuple[int, str]) -> tuple[int, int]:
        position, phrase = item
        terms = _terms(phrase)
        recurring = bool(terms) and all(counts[term] >= 2 for term in terms)
        return (0 if recurring and len(terms) > 1 else 1 if recurring else 2, position)

    return [phrase for _, phrase in sorted(enumerate(_key_phrases(sample, top)), key=rank)]


def _title_case(phrase: str) -> str:
    words = []
    for index, word in enumerate(phrase.split()):
        if any(char.isupper() for char in word):
            words.append(word)  # names and acronyms as spoken: "NASA", "iPhone"
        elif index > 0 and word in _TITLE_SMALL_WORDS:
            words.append(word)
        else:
            words.append(word[:1].upper() + word[1:])
    return " ".join(words)


def _overlaps(phrase: str, chosen: Sequence[str]) -> bool:
    words = {_normalize(word) for word in phrase.lower().split()}
    return any(words & {_normalize(word) for word in other.lower().split()} for other in chosen)


def _compose_title(phrases: Sequence[str], *, min_words: int) -> str:
    """The best phrase, joined by a second unrelated one while the title is still too short."""
    chosen: list[str] = []
    for phrase in phrases:
        if len(chosen) == 2 or sum(len(p.split()) for p in chosen) >= min_words:
            break
        if _overlaps(phrase, chosen):
            continue
        if sum(len(p.split()) for p in chosen) + len(phrase.split()) > TITLE_MAX_WORDS:
            continue
        chosen.append(phrase)
    return _clip(" and ".join(_title_case(phrase) for phrase in chosen), TITLE_MAX_CHARS)


def _fallback_title(text: str) -> str:
    return _clip(_title_case(" ".join(_drop_repeats(text.split())[:6]).strip(" ,.;:!?")), TITLE_MAX_CHARS)


def _title(sample: str, text: str, *, top: int, min_words: int, fallback: str, taken: Sequence[str] = ()) -> str:
    """A title from YAKE's key phrases of `sample`, an extract of `text`; not one of `taken`.

    `fallback` is for text without a single word ("...", "♪").
    """
    taken_lower = {title.lower() for title in taken}
    phrases = [
        phrase
        for phrase in _ranked_phrases(sample, Counter(_terms(text)), top)
        if _title_case(phrase).lower() not in taken_lower
    ]
    return _compose_title(phrases, min_words=min_words) or _fallback_title(text) or fallback


# --- summary ---------------------------------------------------------------------------------


def _length_weight(words: int) -> float:
    # Centrality alone prefers long sentences; very short ones say little, very long ones ramble.
    if words < 8:
        return words / 8
    if words > 40:
        return 40 / words
    return 1.0


@dataclass(frozen=True)
class _Candidate:
    part: int  # which chapter (or 0 for the whole transcript) the sentence belongs to
    position: int  # order in the transcript
    text: str
    vector: Vector
    score: float


def _candidates(parts: Sequence[Sequence[str]]) -> list[_Candidate]:
    """Sentences scored by TF-IDF cosine to their own part's centroid (part = chapter)."""
    term_lists = [[_terms(sentence) for sentence in part] for part in parts]
    idf = _idf([terms for part in term_lists for terms in part])
    candidates: list[_Candidate] = []
    for number, (sentences, terms) in enumerate(zip(parts, term_lists, strict=True)):
        vectors = [_unit(_tfidf(t, idf)) for t in terms]
        centroid: Vector = {}
        for vector in vectors:
            _add(centroid, vector)
        centroid = _unit(centroid)
        for sentence, vector in zip(sentences, vectors, strict=True):
            score = _dot(vector, centroid) * _length_weight(len(sentence.split()))
            candidates.append(_Candidate(number, len(candidates), sentence, vector, score))
    return candidates


def _summary(candidates: Sequence[_Candidate]) -> str:
    """The most central sentences, first one from each of the largest parts, then any.

    A talk about several things is summarised by one sentence per topic rather than three
    from its wordiest topic; sentences that repeat a picked one are skipped.
    """
    if not candidates:
        return ""
    part_words = Counter({c.part: 0 for c in candidates})
    for candidate in candidates:
        part_words[candidate.part] += len(candidate.text.split())
    part_rank = {
        part: rank for rank, (part, _) in enumerate(sorted(part_words.items(), key=lambda kv: (-kv[1], kv[0])))
    }
    best_first = sorted(candidates, key=lambda c: (-c.score, c.position))
    # Round one: the best sentence of each part, largest parts first; round two: the rest.
    rounds = [
        sorted({c.part: c for c in reversed(best_first)}.values(), key=lambda c: part_rank[c.part]),
        best_first,
    ]
    picked: list[_Candidate] = []
    length = 0
    for candidate in (c for round_ in rounds for c in round_):
        if len(picked) == SUMMARY_SENTENCES:
            break
        if any(candidate.position == p.position for p in picked) or any(
            _dot(candidate.vector, p.vector) > _REDUNDANT_COSINE for p in picked
        ):
            continue
        if picked and length + len(candidate.text) + 1 > SUMMARY_MAX_CHARS:
            continue
        picked.append(candidate)
        length += len(candidate.text) + 1
    picked.sort(key=lambda c: c.position)
    return _clip(" ".join(_as_sentence(c.text) for c in picked), SUMMARY_MAX_CHARS)


def _extract(candidates: Sequence[_Candidate], max_words: int) -> str:
    """The best-scored sentences, up to `max_words`, in transcript order.

    YAKE's cost grows with the text; its key phrases of a long passage come from the passage's
    central sentences anyway, so it reads those and a one-hour talk stays well under a second.
    """
    chosen: list[_Candidate] = []
    words = 0
    for candidate in sorted(candidates, key=lambda c: (-c.score, c.position)):
        size = len(candidate.text.split())
        if chosen and words + size > max_words:
            continue
        chosen.append(candidate)
        words += size
    return " ".join(c.text for c in sorted(chosen, key=lambda c: c.position))


# --- chapters --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TilingParams:
    window_seconds: float  # each side of a gap: the text spoken this long before and after it
    min_chapter_seconds: float
    max_chapters: int


def _tiling_params(duration: float) -> _TilingParams:
    return _TilingParams(
        window_seconds=min(90.0, max(60.0, duration / 10)),
        min_chapter_seconds=max(60.0, duration / 40),
        # about one chapter per two and a half minutes at most
        max_chapters=max(1, 1 + int(duration // 150)),
    )


def _gap_similarities(cues: Sequence[Cue], window: float) -> list[float]:
    """Item g-1: cosine between the text in `window` s before cue g and the text from cue g on."""
    term_lists = [_terms(cue.text) for cue in cues]
    idf = _idf(term_lists)
    vectors = [_tfidf(terms, idf) for terms in term_lists]
    starts = [cue.start for cue in cues]
    similarities = []
    for gap in range(1, len(cues)):
        left: Vector = {}
        for j in range(bisect_left(starts, starts[gap] - window), gap):
            _add(left, vectors[j])
        right: Vector = {}
        for j in range(gap, bisect_left(starts, starts[gap] + window)):
            _add(right, vectors[j])
        similarities.append(_cosine(left, right))
    return similarities


def _smooth(values: Sequence[float]) -> list[float]:
    # One step of neighbour averaging removes single-cue noise without moving real valleys.
    n = len(values)
    return [sum(values[max(0, i - 1) : i + 2]) / (min(n, i + 2) - max(0, i - 1)) for i in range(n)]


def _depths(values: Sequence[float], times: Sequence[float], reach: float) -> list[float]:
    """TextTiling's depth score, with each side's peak taken as the highest point within `reach` s.

    Classic hill-climbing stops at the first small bump, which on short, noisy cue windows
    hides real topic shifts; the highest cohesion nearby is a steadier reference.
    """
    depths = []
    for i, value in enumerate(values):
        lo = bisect_left(times, times[i] - reach)
        hi = bisect_left(times, times[i] + reach)
        depths.append(max(values[lo : i + 1]) - value + max(values[i:hi]) - value)
    return depths


def _snap_to_sentence(gap: int, cues: Sequence[Cue], similarities: Sequence[float]) -> int:
    """Move a boundary by a cue or two so the chapter starts with a sentence, when punctuation allows."""
    candidates = [
        g for g in range(max(1, gap - 2), min(len(cues), gap + 3)) if _SENTENCE_END.search(cues[g - 1].text.strip())
    ]
    if not candidates:
        return gap
    return min(candidates, key=lambda g: (abs(g - gap), similarities[g], g))


def _boundaries(cues: Sequence[Cue], duration: float) -> list[int]:
    """Indexes of the cues that open chapters 2..n, in order."""
    if len(cues) < 3:
        return []
    params = _tiling_params(duration)
    # similarities[g] and depths[g] describe the gap just before cue g; there is no gap before cue 0.
    similarities = [1.0, *_smooth(_gap_similarities(cues, params.window_seconds))]
    times = [cue.start for cue in cues[1:]]
    depths = [0.0, *_depths(similarities[1:], times, params.window_seconds * 1.5)]
    valleys = [
        g
        for g in range(1, len(cues))
        if depths[g] > 0
        and similarities[g] <= similarities[g - 1]
        and (g == len(cues) - 1 or similarities[g] <= similarities[g + 1])
    ]
    if not valleys:
        return []
    valley_depths = [depths[g] for g in valleys]
    # Valleys clearly deeper than the typical one are topic shifts (TextTiling's cut-off, made
    # stricter because cue windows are noisier than paragraphs); in a talk with many strong shifts
    # that bar rises above the weaker real ones, so any valley within 60% of the deepest also counts.
    cutoff = min(
        statistics.fmean(valley_depths) + statistics.pstdev(valley_depths) / 2,
        0.6 * max(valley_depths),
    )
    chosen: list[int] = []
    for gap in sorted(valleys, key=lambda g: (-depths[g], g)):
        if depths[gap] < cutoff or len(chosen) == params.max_chapters - 1:
            break
        gap = _snap_to_sentence(gap, cues, similarities)
        start = cues[gap].start
        if start < params.min_chapter_seconds or duration - start < params.min_chapter_seconds:
            continue
        if any(abs(start - cues[other].start) < params.min_chapter_seconds for other in chosen):
            continue
        chosen.append(gap)
    return sorted(chosen)


def _chapter_openings(cues: Sequence[Cue], duration: float) -> list[int]:
    """Indexes of the cues that open chapters; empty when the video gets no chapters."""
    if duration < MIN_CHAPTERED_SECONDS or not cues or cues[0].start >= duration:
        return []
    return [0, *_boundaries([cue for cue in cues if cue.start < duration], duration)]


def _spans(openings: Sequence[int], count: int) -> list[tuple[int, int]]:
    edges = [*openings, count] if openings else [0, count]
    return list(zip(edges, edges[1:], strict=False))


def _chapters(
    cues: Sequence[Cue], openings: Sequence[int], candidates: Sequence[_Candidate], duration: float
) -> list[Chapter]:
    if not openings:
        return []
    # cues are sorted, so those inside the video are a prefix and `openings` index into it too
    inside = [cue for cue in cues if cue.start < duration]
    chapters: list[Chapter] = []
    for number, (first, end) in enumerate(_spans(openings, len(inside))):
        text = " ".join(cue.text for cue in inside[first:end])
        sample = _extract([c for c in candidates if c.part == number], _CHAPTER_SAMPLE_WORDS)
        title = _title(
            sample or text, text, top=10, min_words=1, fallback=f"Part {number + 1}", taken=[c.title for c in chapters]
        )
        # The first chapter starts at 0 even when speech starts later, as players expect.
        chapters.append(Chapter(title=title, start=0.0 if number == 0 else inside[first].start))
    return chapters


def generate_metadata(cues: Sequence[Cue], duration: float) -> AIResult:
    """The synchronous core of `BuiltinEngine.generate`; raises ValueError when there is no text."""
    ordered = sorted((cue for cue in cues if cue.text.strip()), key=lambda cue: (cue.start, cue.end))
    text = " ".join(" ".join(cue.text.split()) for cue in ordered)
    if not text:
        raise ValueError("the transcript has no text to summarise")
    openings = _chapter_openings(ordered, duration)
    candidates = _candidates([_sentences(ordered[first:end]) for first, end in _spans(openings, len(ordered))])
    sample = _extract(candidates, _TITLE_SAMPLE_WORDS)
    return AIResult(
        title=_title(sample or text, text, top=20, min_words=2, fallback="Untitled"),
        summary=_summary(candidates) or _clip(text, SUMMARY_MAX_CHARS),
        chapters=_chapters(ordered, openings, candidates, duration),
    )


class BuiltinEngine:
    name = "builtin"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def generate(self, cues: list[Cue], duration: float) -> AIResult:
        # CPU-bound: keep the event loop (heartbeats, other jobs) responsive.
        return await asyncio.to_thread(generate_metadata, list(cues), duration)

    async def aclose(self) -> None:
        return None
