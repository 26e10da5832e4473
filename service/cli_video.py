"""`capvid video ...`: the Video API from the command line, built on service.client.

Results go to stdout (ids, statuses, transcript lines), progress bars and errors to stderr.
Exit codes: 0 done, 1 the API refused or the awaited work failed, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client loads only when a video command runs
    from rich.progress import Progress

    from service.client import CapvidClient, VideoState

TRANSCRIPT_LINES = 5
_TIMING = re.compile(r"^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{3})\s+-->")


def add_video_commands(commands: Any) -> None:
    """Register `capvid video` and its actions on the top-level subparsers."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", help="the server (default: $CAPVID_URL, else http://127.0.0.1:8000)")
    connection.add_argument("--token", help="an API token (default: $CAPVID_TOKEN, else .capvid/dev-token)")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="follow the work to its end, with a progress bar")
    waiting.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="give up waiting after this")

    video = commands.add_parser("video", help="use the Video API of a running server")
    actions = video.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[connection], help="create a video; prints its id")
    create.add_argument("--name", help="its name (default: the server's, replaced by the AI title)")
    create.add_argument("--private", action="store_true", help="only you may see it")

    upload = actions.add_parser(
        "upload", parents=[connection, waiting], help="upload a media file (creating a video); prints the video id"
    )
    upload.add_argument("file", type=Path, help="the media file (mp4)")
    upload.add_argument("--video", metavar="ID", help="upload to this video instead of a new one")
    upload.add_argument("--name", help="the new video's name")
    upload.add_argument("--private", action="store_true", help="the new video is private")
    upload.add_argument("--ai", action="store_true", help="also wait for the AI title and summary, and print them (implies --wait)")
    upload.add_argument("--lines", type=int, default=TRANSCRIPT_LINES, help="transcript lines printed (default 5)")

    status = actions.add_parser("status", parents=[connection, waiting], help="transcription and AI status")
    status.add_argument("video_id", metavar="ID")
    status.add_argument("--json", action="store_true", help="print the whole Video object as JSON")

    transcript = actions.add_parser("transcript", parents=[connection], help="print the WebVTT transcript")
    transcript.add_argument("video_id", metavar="ID")
    delete = actions.add_parser("delete", parents=[connection], help="delete a video and everything attached")
    delete.add_argument("video_id", metavar="ID")
    ai = actions.add_parser("ai", parents=[connection, waiting], help="generate the AI title, summary, chapters")
    ai.add_argument("video_id", metavar="ID")


def run_video(args: argparse.Namespace) -> int:
    from service.client import CapvidConfigError, CapvidError

    if args.action == "upload" and not args.file.is_file():
        print(f"capvid: no such file: {args.file}", file=sys.stderr)
        return 2
    if args.action == "upload" and args.ai:
        args.wait = True
    try:
        return asyncio.run(_ACTIONS[args.action](args))
    except CapvidConfigError as exc:
        print(f"capvid: {exc}", file=sys.stderr)
        return 2
    except CapvidError as exc:
        print(f"capvid: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"capvid: still not done after {getattr(args, 'timeout', None)} s", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _client(args: argparse.Namespace) -> CapvidClient:
    from service.client import CapvidClient

    return CapvidClient(args.url, args.token)


async def _create(args: argparse.Namespace) -> int:
    async with _client(args) as capvid:
        video = await capvid.create_video(name=args.name, public=not args.private)
    print(video.id)
    return 0


async def _upload(args: argparse.Namespace) -> int:
    path: Path = args.file
    async with _client(args) as capvid:
        video_id = args.video
        if video_id is None:
            # No name by default: the AI title names it; the file name is kept as metadata.
            created = await capvid.create_video(
                name=args.name, public=not args.private, metadata={"sourceName": path.name}
            )
            video_id = created.id
        print(video_id, flush=True)
        with _bars() as bars:
            task = bars.add_task(f"uploading {path.name}", total=path.stat().st_size)
            await capvid.upload(video_id, path, on_progress=lambda sent, _: bars.update(task, completed=sent))
        if not args.wait:
            return 0
        await _follow(capvid, video_id, "transcription", args.timeout)
        document = await capvid.transcript(video_id)
        lines = transcript_lines(document, args.lines)
        print("\n".join(lines) if lines else "(the transcript is empty)")
        if args.ai:
            await _follow(capvid, video_id, "ai", args.timeout)
            _print_ai((await capvid.get_video(video_id)).metadata)
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as capvid:
        if args.wait:
            await _follow(capvid, args.video_id, "transcription", args.timeout, fail=False)
        video = await capvid.get_video(args.video_id)
    if args.json:
        print(video.model_dump_json(by_alias=True, indent=2))
    else:
        print(f"transcription: {video.transcription_status or 'none'}")
        print(f"ai: {video.metadata.get('aiGenerationStatus') or 'none'}")
        if video.transcription_error:
            print(f"error: {video.transcription_error}")
    return 1 if args.wait and video.transcription_status == "ERROR" else 0


async def _transcript(args: argparse.Namespace) -> int:
    async with _client(args) as capvid:
        sys.stdout.write(await capvid.transcript(args.video_id))
    return 0


async def _delete(args: argparse.Namespace) -> int:
    async with _client(args) as capvid:
        await capvid.delete(args.video_id)
    print(f"deleted {args.video_id}")
    return 0


async def _ai(args: argparse.Namespace) -> int:
    async with _client(args) as capvid:
        status = await capvid.generate_ai(args.video_id)
        if not args.wait:
            print(f"ai: {status}")
            return 0
        await _follow(capvid, args.video_id, "ai", args.timeout)
        _print_ai((await capvid.get_video(args.video_id)).metadata)
    return 0


_ACTIONS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "create": _create,
    "upload": _upload,
    "status": _status,
    "transcript": _transcript,
    "delete": _delete,
    "ai": _ai,
}


async def _follow(
    capvid: CapvidClient, video_id: str, kind: str, timeout: float | None, fail: bool = True
) -> VideoState:
    """Wait for the transcription (or AI generation) to end, showing its progress. With `fail`,
    an end other than COMPLETE raises WaitFailed; without, any final status is fine."""
    from service.client.events import AI_DONE, TRANSCRIPTION_DONE

    label = "transcribing" if kind == "transcription" else "generating title and summary"
    bars = _progress(percent=True)
    task = bars.add_task(label, total=100)
    shown = False

    def show(state: VideoState) -> None:
        nonlocal shown
        if not shown:  # on the first event: no bar when the stream cannot even open
            bars.start()
            shown = True
        fraction = state.transcription_progress if kind == "transcription" else state.ai_progress
        if fraction is not None:
            bars.update(task, completed=round(100 * fraction, 1))

    try:
        if kind == "transcription":
            wanted = "COMPLETE" if fail else TRANSCRIPTION_DONE
            return await capvid.wait_for(video_id, transcription=wanted, timeout=timeout, on_update=show)
        return await capvid.wait_for(video_id, ai="COMPLETE" if fail else AI_DONE, timeout=timeout, on_update=show)
    finally:
        if shown:
            bars.stop()


@contextmanager
def _bars(percent: bool = False) -> Iterator[Progress]:
    with _progress(percent) as bars:
        yield bars


def _progress(percent: bool = False) -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    amount = [TaskProgressColumn()] if percent else [DownloadColumn(), TransferSpeedColumn()]
    return Progress(
        TextColumn("{task.description}"), BarColumn(), *amount, TimeElapsedColumn(), console=Console(stderr=True),
        redirect_stdout=False,  # results printed meanwhile still go to stdout
    )


def transcript_lines(document: str, limit: int) -> list[str]:
    """The first cues of a WebVTT document as `start  text` lines."""
    lines = document.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        match = _TIMING.match(line)
        if not match:
            continue
        text: list[str] = []
        for following in lines[i + 1 :]:
            if not following.strip():
                break
            text.append(following.strip())
        if text:
            out.append(f"{match[1]}  {' '.join(text)}")
        if len(out) >= limit:
            break
    return out


def _print_ai(metadata: dict[str, Any]) -> None:
    print(f"title: {metadata.get('aiTitle') or ''}")
    print(f"summary: {metadata.get('summary') or ''}")
    for chapter in metadata.get("chapters") or []:
        print(f"chapter {_clock(float(chapter.get('start', 0)))}  {chapter.get('title', '')}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
