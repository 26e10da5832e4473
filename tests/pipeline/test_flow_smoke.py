from tests.helpers import MEDIA, bearer, drain, query


async def test_spoken_upload_to_complete(api, alice):
    video = await api.create_video(alice)
    r = await api.upload(alice, video["id"], (MEDIA / "spoken.mp4").read_bytes())
    assert r.status == 200, await r.text()
    await drain(api.settings)
    v = await api.video(alice, video["id"])
    print(v)
    print(query(api.settings, "SELECT kind, status, run, attempt, detail FROM video_events ORDER BY id"))
    r = await api.client.get("/api/video/transcript", params={"videoId": video["id"]}, headers=bearer(alice))
    print(await r.text())
    assert v["transcriptionStatus"] == "COMPLETE"
