"""A local stand-in for an OpenAI-compatible chat-completions API, speaking its wire format.

    fake = FakeOpenAI(api_key="k")
    server = await aiohttp_server(fake.app())
    ... Settings(ai_base_url=str(server.make_url("/v1")), ai_api_key="k", ...)
    assert len(fake.requests) == 1

What the "model" says comes from `answer(request_json) -> str | dict` (a dict is sent as JSON
text); the default echoes a title, a summary and one chapter at the prompt's first timestamp.
Faults are queued with `fail_next(...)` and served one per request, before any answer:

    fake.fail_next("malformed", times=2)      # content that is not JSON
    fake.fail_next("429", retry_after="0")    # rate limited, with a Retry-After header
    fake.fail_next("500")
    fake.fail_next("hang")                    # no answer until `hang_seconds` or shutdown
    fake.always_malformed = True              # every answer is broken JSON

Behaviour may be changed between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

Fault = Literal["malformed", "429", "500", "503", "hang", "empty_choices"]
Answer = Callable[[dict[str, Any]], "str | dict[str, Any]"]

MALFORMED_CONTENT = '{"title": "Half an answer", "summary": '
_TIMESTAMP = re.compile(r"^\[(\d+(?:\.\d+)?)\] ", re.MULTILINE)


def prompt_of(request: dict[str, Any]) -> str:
    """A request's first user message: the instructions and the transcript (or chunk summaries)."""
    return next((m["content"] for m in request.get("messages", []) if m.get("role") == "user"), "")


def timestamps_of(request: dict[str, Any]) -> list[float]:
    """The start times of the prompt's "[seconds] text" transcript lines."""
    return [float(stamp) for stamp in _TIMESTAMP.findall(prompt_of(request))]


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: CIMultiDict[str]
    json: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.json.get("messages", []))

    @property
    def prompt(self) -> str:
        return prompt_of(self.json)

    @property
    def transcript_lines(self) -> list[str]:
        """The prompt's "[seconds] text" lines."""
        return [line for line in self.prompt.splitlines() if _TIMESTAMP.match(line)]

    @property
    def transcript_words(self) -> int:
        """Words of transcript text in the prompt, timestamps not counted."""
        return sum(len(_TIMESTAMP.sub("", line, count=1).split()) for line in self.transcript_lines)

    @property
    def timestamps(self) -> list[float]:
        return timestamps_of(self.json)


def default_answer(request: dict[str, Any]) -> dict[str, Any]:
    """A plausible answer to any of the engine's prompts: extra keys are ignored by the engine."""
    stamps = timestamps_of(request)
    first = stamps[0] if stamps else 0.0
    return {
        "title": "A Fake Video Title",
        "summary": "A fake summary of the video. It has two sentences.",
        "chapters": [{"title": f"Topic at {first:g}", "start": first}],
    }


@dataclass
class FakeOpenAI:
    api_key: str | None = "k"  # None: any Authorization header (or none) is accepted
    answer: Answer = default_answer
    always_malformed: bool = False
    hang_seconds: float = 30.0  # a "hang" answers after this, or when the server shuts down
    requests: list[RecordedRequest] = field(default_factory=list)
    _faults: deque[tuple[Fault, dict[str, str]]] = field(default_factory=deque, repr=False)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _ids: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/chat/completions", self._chat_completions)
        app.on_shutdown.append(self._release)
        return app

    def fail_next(self, fault: Fault, *, times: int = 1, retry_after: str | None = None) -> None:
        options = {"retry_after": retry_after} if retry_after is not None else {}
        self._faults.extend([(fault, options)] * times)

    async def _release(self, _app: web.Application) -> None:
        # Lets hanging handlers finish so the test server closes at once.
        self._released.set()

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "We could not parse the JSON body of your request.")
        self.requests.append(RecordedRequest(request.path, CIMultiDict(request.headers), body))
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Incorrect API key provided.", code="invalid_api_key")
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return _error(400, "invalid_request_error", "'messages' and 'model' are required.")
        if self._faults:
            fault, options = self._faults.popleft()
            response = await self._fault(fault, options, body)
            if response is not None:
                return response
        content = MALFORMED_CONTENT if self.always_malformed else self.answer(body)
        return self._completion(body, content if isinstance(content, str) else json.dumps(content))

    async def _fault(self, fault: Fault, options: dict[str, str], body: dict[str, Any]) -> web.Response | None:
        """The faulty response, or None when the fault only delays a normal answer (hang)."""
        if fault == "malformed":
            return self._completion(body, MALFORMED_CONTENT)
        if fault == "empty_choices":
            return web.json_response({"id": self._next_id(), "object": "chat.completion", "choices": []})
        if fault == "429":
            headers = {"Retry-After": options["retry_after"]} if "retry_after" in options else {}
            return _error(429, "rate_limit_exceeded", "Rate limit reached for requests.", headers=headers)
        if fault in ("500", "503"):
            return _error(int(fault), "server_error", "The server had an error while processing your request.")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._released.wait(), self.hang_seconds)
        return None

    def _completion(self, body: dict[str, Any], content: str) -> web.Response:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len(content.split())
        return web.json_response(
            {
                "id": self._next_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def _next_id(self) -> str:
        return f"chatcmpl-fake{next(self._ids)}"


def _error(
    status: int, kind: str, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}, status=status, headers=headers
    )
