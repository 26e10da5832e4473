from tests.helpers import bearer, query


async def test_create_and_read(api, alice):
    video = await api.create_video(alice, name="Demo")
    assert video["name"] == "Demo"
    assert video["transcriptionStatus"] is None
    assert await api.status(alice, video["id"]) is None
    rows = query(api.settings, "SELECT token_hash FROM api_keys")
    assert len(rows) == 1 and len(bytes(rows[0]["token_hash"])) == 32
    r = await api.client.delete("/api/video/delete", params={"videoId": video["id"]}, headers=bearer(alice))
    assert r.status == 200 and await r.read() == b"" and "json" not in r.headers.get("Content-Type", "")
    r = await api.client.delete("/api/video/delete", params={"videoId": video["id"]}, headers=bearer(alice))
    assert r.status == 404 and await r.json() == {"error": "Video not found"}
