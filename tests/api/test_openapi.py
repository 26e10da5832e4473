"""The OpenAPI 3.1 document lists every registered route with its error responses; /api/docs is HTML."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from tests.api.common import PUBLIC_ROUTES, ROUTES, route_id


@pytest.fixture
async def spec(client) -> dict:
    response = await client.get("/api/openapi.json")  # no token needed
    assert response.status == 200 and response.content_type == "application/json"
    return await response.json()


def registered_routes(app) -> set[tuple[str, str]]:
    return {
        (route.method, resource.canonical)
        for resource in app.router.resources()
        for route in resource
        if route.method not in ("HEAD", "OPTIONS", "*")
    }


def documented_routes(spec: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, methods in spec["paths"].items() for method in methods}


async def test_valid_openapi_31(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


async def test_every_registered_route_is_documented(client, spec):
    registered = registered_routes(client.app)
    assert registered == documented_routes(spec)
    assert registered == {(r.method, r.path) for r in ROUTES} | PUBLIC_ROUTES


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_authenticated_route_documents_its_errors(spec, route):
    operation = spec["paths"][route.path][route.method.lower()]
    codes = set(operation["responses"])
    assert str(route.ok) in codes
    assert {"400", "401", "500"} <= codes
    if route.takes_video_id:
        assert "404" in codes
        video_id = [p for p in operation["parameters"] if p["name"] == "videoId"]
        assert video_id and video_id[0]["in"] == "query" and video_id[0]["required"] is True
    assert operation["security"] == ([{}, {"bearer": []}] if route.anonymous else [{"bearer": []}])
    for code in codes - {str(route.ok)}:
        content = operation["responses"][code]["content"]
        assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


@pytest.mark.parametrize("method, path", sorted(PUBLIC_ROUTES))
async def test_public_route_documents_500(spec, method, path):
    operation = spec["paths"][path][method.lower()]
    assert "500" in operation["responses"] and "401" not in operation["responses"]
    assert operation["security"] == []


async def test_specific_errors(spec):
    assert "413" in spec["paths"]["/api/video/upload"]["put"]["responses"]
    assert "409" in spec["paths"]["/api/video/transcribe"]["post"]["responses"]
    assert "409" in spec["paths"]["/api/video/ai/generate"]["post"]["responses"]
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
    error = spec["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"] and "message" in error["properties"]


async def test_docs_page_is_html(client, spec):
    response = await client.get("/api/docs")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert page.lstrip().lower().startswith("<!doctype html>")
    for path in spec["paths"]:
        assert path in page
