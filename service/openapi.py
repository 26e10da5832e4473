"""The OpenAPI 3.1 document, generated from the registered operations and their pydantic models."""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.api import ERROR_DESCRIPTIONS, Api, Operation
from service.models import ErrorOut

REF = "#/components/schemas/{model}"


def build_openapi(operations: list[Operation], version: str) -> dict[str, Any]:
    # Inputs are documented as pydantic validates them, outputs as it serializes them.
    inputs = {m for op in operations for m in (op.body, op.query) if m is not None}
    outputs = {m for op in operations if (m := op.response) is not None} | {ErrorOut}
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)),
        *((m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)),
    ]
    key_map, definitions = models_json_schema(pairs, by_alias=True, ref_template=REF)
    refs: dict[type[BaseModel], dict[str, Any]] = {
        model: ref for (model, _mode), ref in key_map.items() if isinstance(model, type) and issubclass(model, BaseModel)
    }
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "capvid Video API",
            "version": version,
            "description": "A self-hosted, Cap-compatible Video API.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(op: Operation, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.handler.__name__,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": _responses(op, refs),
    }
    if op.description:
        doc["description"] = op.description
    # An empty requirement object is how OpenAPI says "or no credentials at all".
    doc["security"] = {True: [{"bearer": []}], "optional": [{}, {"bearer": []}], False: []}[op.auth]
    if op.query is not None:
        doc["parameters"] = _query_parameters(op.query)
    if op.body is not None:
        doc["requestBody"] = {"required": False, "content": {"application/json": {"schema": refs[op.body]}}}
    elif op.body_media_type is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {op.body_media_type: {"schema": {"type": "string", "contentMediaType": op.body_media_type}}},
        }
    return doc


def _responses(op: Operation, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {op.response_media_type: {"schema": refs[op.response]}}
    elif op.response_media_type != "application/json":
        success["content"] = {op.response_media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): success}
    codes = set(op.errors) | ({401} if op.auth is not False else set()) | {500}
    if op.query is not None or op.body is not None:
        codes.add(400)
    for code in sorted(codes):
        responses[str(code)] = {
            "description": ERROR_DESCRIPTIONS.get(code, "Internal server error"),
            "content": {"application/json": {"schema": refs[ErrorOut]}},
        }
    return responses


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, ref_template=REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        parameters.append(param)
    return parameters


def render_docs_page(spec: dict[str, Any]) -> str:
    """A plain, self-contained page: no CDN, no build step (the service may run offline)."""
    sections = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = ", ".join(
                f"{p['name']}{'' if p['required'] else '?'}" for p in op.get("parameters", [])
            )
            codes = ", ".join(op["responses"])
            sections.append(
                f"<section><h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                f"<p>{html.escape(op['summary'])}</p>"
                + (f"<p>{html.escape(op['description'])}</p>" if "description" in op else "")
                + f"<p><b>Query:</b> {html.escape(params) or 'none'} &middot; <b>Responses:</b> {codes}</p></section>"
            )
    schemas = html.escape(json.dumps(spec["components"]["schemas"], indent=2))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>capvid API</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "section{border-bottom:1px solid #ddd;padding:.5rem 0}code{background:#f4f4f4;padding:0 .2rem}"
        "pre{background:#f4f4f4;padding:1rem;overflow:auto}</style></head><body>"
        f"<h1>{html.escape(spec['info']['title'])} {html.escape(spec['info']['version'])}</h1>"
        "<p>All <code>/api</code> routes take <code>Authorization: Bearer &lt;token&gt;</code>. "
        "Machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a> (OpenAPI 3.1).</p>"
        + "".join(sections)
        + f"<h2>Schemas</h2><pre>{schemas}</pre></body></html>"
    )


def docs_api(all_operations: list[Operation], version: str) -> Api:
    api = Api()
    spec_cache: dict[str, Any] = {}

    def spec() -> dict[str, Any]:
        if not spec_cache:
            spec_cache.update(build_openapi(all_operations + api.operations, version))
        return spec_cache

    @api.route("GET", "/api/openapi.json", auth=False, tag="docs", summary="This OpenAPI 3.1 document")
    async def openapi_json(request: web.Request) -> web.StreamResponse:
        return web.json_response(spec())

    @api.route("GET", "/api/docs", auth=False, tag="docs", response_media_type="text/html",
               summary="Human-readable API documentation")
    async def docs_page(request: web.Request) -> web.StreamResponse:
        return web.Response(text=render_docs_page(spec()), content_type="text/html")

    return api
