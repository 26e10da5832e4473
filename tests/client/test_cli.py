"""`capvid video ...` as a user runs it: results on stdout, errors as one line on stderr, exit codes."""

from __future__ import annotations

import json

from tests.client.cli import capvid_cli
from tests.helpers import MEDIA, query

SPOKEN = MEDIA / "spoken.mp4"


async def test_create_with_the_dev_token_and_status(server_url, alice, settings, tmp_path):
    (tmp_path / ".capvid").mkdir()
    (tmp_path / ".capvid" / "dev-token").write_text(alice + "\n")  # what `capvid dev` leaves here
    code, out, err = await capvid_cli(server_url, None, tmp_path, "video", "create", "--name", "Demo", "--private")
    assert code == 0, err
    video_id = out.strip()
    assert query(settings, "SELECT name, public FROM videos WHERE id = %s", (video_id,)) == [
        {"name": "Demo", "public": False}
    ]

    code, out, err = await capvid_cli(server_url, None, tmp_path, "video", "status", video_id)
    assert (code, out) == (0, "transcription: none\nai: none\n"), err
    code, out, err = await capvid_cli(server_url, None, tmp_path, "video", "status", video_id, "--json")
    assert code == 0 and json.loads(out)["id"] == video_id and json.loads(out)["hasMedia"] is False


async def test_upload_without_wait(server_url, alice, settings, tmp_path):
    code, out, err = await capvid_cli(server_url, alice, tmp_path, "video", "upload", str(SPOKEN))
    assert code == 0, err
    video_id = out.strip()
    row = query(settings, "SELECT media_bytes, transcription_status, metadata FROM videos WHERE id = %s", (video_id,))
    assert row[0]["media_bytes"] == SPOKEN.stat().st_size and row[0]["transcription_status"] == "PROCESSING"
    assert row[0]["metadata"]["sourceName"] == "spoken.mp4"
    assert "uploading spoken.mp4" in err  # the progress bar, on stderr

    code, out, err = await capvid_cli(server_url, alice, tmp_path, "video", "upload", str(SPOKEN), "--video", video_id)
    assert (code, out.strip()) == (0, video_id), err
    assert query(settings, "SELECT transcription_run FROM videos") == [{"transcription_run": 2}]


async def test_api_errors_exit_1_with_one_line(server_url, alice, tmp_path):
    video_id = (await capvid_cli(server_url, alice, tmp_path, "video", "create"))[1].strip()
    code, out, err = await capvid_cli(server_url, alice, tmp_path, "video", "ai", video_id)
    assert (code, out, err) == (1, "", "capvid: 409 Conflict: The transcript is not COMPLETE yet\n")
    code, out, err = await capvid_cli(server_url, "cv_wrong", tmp_path, "video", "transcript", video_id)
    assert (code, out, err) == (1, "", "capvid: 401 Unauthorized\n")


async def test_usage_errors_exit_2(alice, tmp_path, unused_tcp_port):
    url = f"http://127.0.0.1:{unused_tcp_port}"
    code, _, err = await capvid_cli(url, None, tmp_path, "video", "create")
    assert code == 2 and "CAPVID_TOKEN" in err and "Traceback" not in err
    code, _, err = await capvid_cli(url, alice, tmp_path, "video", "upload", str(tmp_path / "missing.mp4"))
    assert (code, err) == (2, f"capvid: no such file: {tmp_path / 'missing.mp4'}\n")
    code, _, err = await capvid_cli(url, alice, tmp_path, "video", "upload")
    assert code == 2 and "usage:" in err
    # Nothing listens there: an error of its own, still one line.
    code, _, err = await capvid_cli(url, alice, tmp_path, "video", "status", "abc")
    assert code == 1 and len(err.strip().splitlines()) == 1 and url in err
