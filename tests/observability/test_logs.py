"""Structured logs: one JSON object a line, with the request id that the response echoes, and
the same id in the log lines of the jobs the request caused (upload → transcribe → generate_ai)."""

from __future__ import annotations

import io
import logging
import re

import pytest
from aiohttp import web

from service.app import create_app
from service.observability.context import bound
from service.observability.logs import log_handler
from tests.helpers import MEDIA, bearer, drain, query
from tests.pipeline.conftest import with_deepgram

GENERATED = re.compile(r"^[0-9a-f]{32}$")


def access_lines(lines: list[dict], request_id: str) -> list[dict]:
    return [line for line in lines if line["logger"] == "capvid.access" and line.get("request_id") == request_id]


async def test_access_line_carries_the_echoed_request_id(client, alice, json_logs):
    response = await client.get("/api/videos", headers=bearer(alice))
    assert response.status == 200
    request_id = response.headers["X-Request-ID"]
    assert GENERATED.match(request_id)

    [line] = access_lines(json_logs(), request_id)
    assert {k: line[k] for k in ("level", "logger", "method", "route", "path", "status")} == {
        "level": "INFO", "logger": "capvid.access", "method": "GET", "route": "/api/videos", "path": "/api/videos",
        "status": 200,
    }
    assert line["duration_ms"] >= 0 and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["time"])
    assert line["message"] == "GET /api/videos 200"


async def test_incoming_request_id_is_honoured(client, json_logs):
    response = await client.get("/healthz", headers={"X-Request-ID": "lb-7f3a:9/x=="})
    assert response.headers["X-Request-ID"] == "lb-7f3a:9/x=="
    assert access_lines(json_logs(), "lb-7f3a:9/x==")[0]["status"] == 200


@pytest.mark.parametrize("bad", ["", "has space", "quote\"d", "x" * 129, "ünïcode", "semi;colon"])
async def test_insane_request_id_is_replaced(client, json_logs, bad):
    response = await client.get("/healthz", headers={"X-Request-ID": bad})
    echoed = response.headers["X-Request-ID"]
    assert GENERATED.match(echoed) and echoed != bad
    assert len(access_lines(json_logs(), echoed)) == 1


async def test_error_answers_carry_the_request_id_too(client, json_logs):
    unauthorized = await client.get("/api/videos", headers={"X-Request-ID": "req-401"})
    not_found = await client.get("/nowhere", headers={"X-Request-ID": "req-404"})
    assert unauthorized.status == 401 and unauthorized.headers["X-Request-ID"] == "req-401"
    assert not_found.status == 404 and not_found.headers["X-Request-ID"] == "req-404"
    lines = json_logs()
    assert access_lines(lines, "req-401")[0]["route"] == "/api/videos"
    assert access_lines(lines, "req-404")[0]["route"] == "unmatched"


async def test_one_upload_is_followed_from_request_to_its_jobs(api, alice, deepgram, json_logs):
    video = await api.create_video(alice)
    response = await api.client.put(
        "/api/video/upload", params={"videoId": video["id"]}, data=(MEDIA / "spoken.mp4").read_bytes(),
        headers={**bearer(alice), "X-Request-ID": "upload-42"},
    )
    assert response.status == 200 and response.headers["X-Request-ID"] == "upload-42"
    await drain(with_deepgram(api.settings, deepgram))
    assert await api.status(alice, video["id"]) == "COMPLETE"

    lines = json_logs()
    [web] = access_lines(lines, "upload-42")
    assert (web["method"], web["route"], web["status"]) == ("PUT", "/api/video/upload", 200)
    job_lines = [line for line in lines if line.get("request_id") == "upload-42" and "job_id" in line]
    ended = {line["function"]: line for line in job_lines if line["message"].startswith("job ") and "outcome" in line}
    # The transcription was requested by the upload, the AI run by the transcription: both carry it.
    assert set(ended) == {"transcribe", "generate_ai"}
    for line in ended.values():
        assert line["outcome"] == "complete" and line["video_id"] == video["id"]
        assert line["job_id"].startswith("capvid:")
    jobs = query(api.settings, "SELECT function, args FROM outbox WHERE video_id = %s ORDER BY id", (video["id"],))
    assert [(j["function"], j["args"]["_request_id"]) for j in jobs] == [
        ("transcribe", "upload-42"), ("generate_ai", "upload-42")
    ]


def test_text_format_appends_the_ids():
    stream = io.StringIO()
    logger = logging.getLogger("capvid.test.text")
    logger.addHandler(log_handler("text", stream))
    logger.propagate = False
    try:
        with bound(request_id="r1", job_id="capvid:9"):
            logger.warning("hello %s", "there")
        logger.warning("no ids")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING capvid.test.text: hello there [request_id=r1 job_id=capvid:9]")
    assert second.endswith("WARNING capvid.test.text: no ids")


def test_json_lines_keep_extras_and_tracebacks_on_one_line(json_logs):
    log = logging.getLogger("capvid.test.json")
    try:
        raise ValueError("boom")
    except ValueError:
        with bound(video_id="vid1"):
            log.exception("it broke", extra={"attempt": 2})
    [line] = [line for line in json_logs() if line["logger"] == "capvid.test.json"]
    assert line["level"] == "ERROR" and line["message"] == "it broke" and line["attempt"] == 2
    assert line["video_id"] == "vid1" and "ValueError: boom" in line["exc_info"]
    assert "request_id" not in line


async def test_a_streamed_response_carries_the_request_id(aiohttp_client, settings, json_logs):
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)  # headers are sent here, inside the handler
        await response.write(b"data: 1\n\n")
        return response

    app = create_app(settings)
    app.router.add_get("/test/stream", stream)
    client = await aiohttp_client(app)
    response = await client.get("/test/stream", headers={"X-Request-ID": "stream-1"})
    assert response.status == 200 and response.headers["X-Request-ID"] == "stream-1"
    assert await response.read() == b"data: 1\n\n"
    assert access_lines(json_logs(), "stream-1")[0]["route"] == "/test/stream"


def test_arq_s_own_job_start_and_end_lines_are_left_out_unless_debugging(json_logs):
    arq_log = logging.getLogger("arq.worker")
    arq_log.info("%6.2fs → %s(%s)%s", 0.01, "capvid:1:transcribe", "'v1'", "")
    arq_log.info("%6.2fs ← %s ● %s", 0.02, "capvid:1:transcribe", "'COMPLETE'")
    arq_log.info("%6.2fs ↻ %s retrying job in %0.2fs", 0.03, "capvid:1:transcribe", 2.0)
    assert [line["message"] for line in json_logs() if line["logger"] == "arq.worker"] == [
        "  0.03s ↻ capvid:1:transcribe retrying job in 2.00s"
    ]

    logging.getLogger().setLevel(logging.DEBUG)
    arq_log.info("%6.2fs ← %s ● %s", 0.04, "capvid:2:transcribe", "'COMPLETE'")
    assert json_logs()[-1]["message"] == "  0.04s ← capvid:2:transcribe ● 'COMPLETE'"
