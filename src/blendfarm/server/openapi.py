"""The OpenAPI document, generated from the routes so it cannot drift from them.

Every endpoint is decorated with `@api(...)`, which names its request and response messages
(types of `protocol`); `openapi_document` walks the app's routes and builds the document from
those notes, and the schemas from the message types themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

from ..formats import CHUNK_KINDS
from ..protocol import schema_name, schemas

F = TypeVar("F", bound=Callable[..., Any])

_str = {"type": "string"}
Shape = type | str
"""A message type of `protocol` (or, while routes move over, its schema name)."""


def _name(shape: Shape | None) -> str | None:
    if shape is None or isinstance(shape, str):
        return shape
    return schema_name(shape)


def api(
    summary: str,
    *,
    request: Shape | None = None,
    response: Shape | None = None,
    media: str | None = None,
    status: int = 200,
    auth: str | None = None,
    body: str | None = None,
) -> Callable[[F], F]:
    """Describe an endpoint for the OpenAPI document."""

    def mark(fn: F) -> F:
        fn.openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "request": _name(request),
            "response": _name(response),
            "media": media,
            "status": status,
            "auth": auth,
            "body": body,
        }
        return fn

    return mark


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _operation(route: Route, method: str, note: dict[str, Any]) -> dict[str, Any]:
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {
                "type": "string",
                "pattern": r"^\d+$" if name == "task_id" else "^[A-Za-z0-9_.-]+$",
            },
        }
        for name in re.findall(r"{(\w+)}", route.path)
    ]
    if "/api/tasks/" in route.path:
        params.append({"name": "lease", "in": "query", "required": True, "schema": _str})
    if route.path.endswith("/preview"):
        frame = {"name": "frame", "in": "query", "required": False, "schema": {"type": "integer"}}
        params.append(frame)
    if route.path == "/api/tasks/{task_id}/result":
        kinds = {"type": "string", "enum": [*CHUNK_KINDS, "final"], "default": "png"}
        params.append({"name": "kind", "in": "query", "required": False, "schema": kinds})
    if route.path == "/api/blender" and method == "PUT":
        params.append({"name": "filename", "in": "query", "required": True, "schema": _str})
    op: dict[str, Any] = {
        "summary": note["summary"],
        "operationId": f"{method.lower()}_{route.name}",
        "parameters": params,
    }
    ok = str(note["status"])
    if note["response"]:
        op["responses"] = {
            ok: {
                "description": "OK",
                "content": {"application/json": {"schema": _ref(note["response"])}},
            }
        }
    else:
        op["responses"] = {
            ok: {
                "description": "OK",
                "content": {note["media"] or "application/octet-stream": {"schema": {}}},
            }
        }
    if route.path.endswith("/lease"):
        op["responses"]["204"] = {"description": "no work right now"}
    if route.path.endswith("/preview"):
        op["responses"]["304"] = {"description": "unchanged since the ETag in If-None-Match"}
    error = {"description": "error", "content": {"application/json": {"schema": _ref("ErrorBody")}}}
    for code in ("400", "404", "409", "413"):
        op["responses"][code] = error
    if note["auth"] == "token":
        op["security"] = [{"nodeToken": []}]
        op["responses"]["401"] = error
    if note["auth"] == "password":
        op["security"] = [{"adminPassword": []}]
        op["responses"]["403"] = error
        op["responses"]["429"] = error
    if note["auth"] == "owner":
        op["security"] = [{"ownerKey": []}, {"adminPassword": []}]
        op["responses"]["403"] = error
        op["responses"]["429"] = error
    if note["request"] == "SubmissionForm":
        op["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": _ref("SubmissionForm")}},
        }
        op["responses"]["507"] = error
    elif note["request"]:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(note["request"])}},
        }
    elif note["body"]:
        op["requestBody"] = {
            "required": True,
            "content": {note["body"]: {"schema": {"type": "string", "format": "binary"}}},
        }
    return op


def openapi_document(routes: Iterable[BaseRoute], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every API route, its shapes from `protocol`."""
    named, components = schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        note = getattr(route.endpoint, "openapi", None)
        if note is None:
            raise RuntimeError(f"route {route.path} has no @api description")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, method, note)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "blendfarm",
            "version": version,
            "description": "The API of a blendfarm server (nodes and dashboard).",
        },
        "paths": paths,
        "components": {
            "schemas": {**components, **named},
            "securitySchemes": {
                "nodeToken": {"type": "http", "scheme": "bearer"},
                "adminPassword": {"type": "apiKey", "in": "header", "name": "X-Blendfarm-Password"},
                "ownerKey": {"type": "apiKey", "in": "header", "name": "X-Blendfarm-Owner-Key"},
            },
        },
    }
