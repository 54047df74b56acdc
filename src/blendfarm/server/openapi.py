"""The OpenAPI document, generated from the routes so it cannot drift from them.

Every endpoint is decorated with `@api(...)`, which names its request and response shapes;
`openapi_document` walks the app's routes and builds the document from those notes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

F = TypeVar("F", bound=Callable[..., Any])

_str = {"type": "string"}
_int = {"type": "integer"}
_nullable_int = {"type": ["integer", "null"]}
_nullable_str = {"type": ["string", "null"]}

PROJECT = {
    "type": "object",
    "required": ["id", "title", "state", "chunks_done", "chunks_total", "created", "size"],
    "properties": {
        "id": _str,
        "title": _str,
        "blend": _str,
        "state": {"enum": ["queued", "rendering", "compositing", "done", "error"]},
        "error": _nullable_str,
        "animation": {"type": "boolean"},
        "frame_start": _nullable_int,
        "frame_end": _nullable_int,
        "tiles": _int,
        "overscan": _int,
        "chunks_done": _int,
        "chunks_total": _int,
        "chunks_rendering": _int,
        "frames_done": _int,
        "width": _nullable_int,
        "height": _nullable_int,
        "fps": {"type": ["number", "null"]},
        "size": _int,
        "created": _str,
        "updated": _str,
        "result_url": _nullable_str,
        "raw_url": _nullable_str,
        "thumbnail_url": _nullable_str,
        "result_type": _nullable_str,
        "blocklist": {"type": "array", "items": _str},
        "warnings": {"type": "array", "items": _str},
    },
}
NODE = {
    "type": "object",
    "required": ["name", "online", "state", "chunks_done"],
    "properties": {
        "name": _str,
        "online": {"type": "boolean"},
        "state": {"enum": ["idle", "rendering", "offline"]},
        "blender_version": _nullable_str,
        "started": _str,
        "last_seen": _str,
        "chunks_done": _int,
        "current": {"type": ["object", "null"]},
        "log_tail": {"type": "array", "items": _str},
    },
}
LINES = {"type": "object", "properties": {"lines": {"type": "array", "items": _str}}}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "status"],
                "properties": {"code": _str, "message": _str, "status": _int},
            }
        },
    },
    "Project": PROJECT,
    "ProjectList": {"type": "array", "items": {"$ref": "#/components/schemas/Project"}},
    "Node": NODE,
    "NodeList": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
    "Lines": LINES,
    "Health": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "version": _str, "server_id": _str},
    },
    "Status": {
        "type": "object",
        "properties": {
            "projects": {"$ref": "#/components/schemas/ProjectList"},
            "nodes": {"$ref": "#/components/schemas/NodeList"},
            "disk": {
                "type": "object",
                "properties": {k: _int for k in ("used", "free", "total", "data")},
            },
            "server_id": _str,
            "version": _str,
        },
    },
    "Deleted": {"type": "object", "properties": {"deleted": _str, "freed": _int}},
    "Purged": {"type": "object", "properties": {"purged": {"type": "boolean"}}},
    "Ok": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    "Accepted": {"type": "object", "properties": {"accepted": {"type": "boolean"}, "reason": _str}},
    "Submission": {
        "type": "object",
        "required": ["file"],
        "additionalProperties": False,
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "blend": _str,
            "title": {"type": "string", "maxLength": 200},
            "animation": {"type": "string", "enum": ["true", "false"]},
            "frame": _str,
            "frames": _str,
            "frame_start": _str,
            "frame_end": _str,
            "tiles": _str,
            "overscan": _str,
        },
    },
    "NewPassword": {
        "type": "object",
        "required": ["password"],
        "properties": {"password": {"type": "string", "minLength": 8}},
    },
    "BlenderStatus": {
        "type": "object",
        "required": ["available", "nodes"],
        "properties": {
            "available": {"type": "boolean"},
            "filename": _str,
            "sha256": _str,
            "size": _int,
            "uploaded": _str,
            "executable": _str,
            "nodes": {"type": "object"},
        },
    },
    "NodeHello": {
        "type": "object",
        "properties": {"blender_version": _str, "hostname": _str, "cores": _int, "version": _str},
    },
    "NodeWelcome": {
        "type": "object",
        "properties": {
            "server_id": _str,
            "node_timeout": {"type": "number"},
            "heartbeat": {"type": "number"},
        },
    },
    "Heartbeat": {
        "type": "object",
        "properties": {
            "tasks": {"type": "array", "items": _int},
            "log": {"type": "array", "items": _str},
        },
    },
    "HeartbeatAnswer": {
        "type": "object",
        "properties": {"server_id": _str, "cancel": {"type": "array", "items": _int}},
    },
    "Task": {
        "type": "object",
        "required": ["id", "lease", "kind", "project"],
        "properties": {
            "id": _int,
            "lease": _str,
            "kind": {"enum": ["probe", "chunk"]},
            "project": _str,
            "sha256": _str,
            "blend": _str,
            "frame": _int,
            "row": _int,
            "col": _int,
        },
    },
    "Probe": {
        "type": "object",
        "properties": {
            "resolution_x": _int,
            "resolution_y": _int,
            "resolution_percentage": _int,
            "frame_start": _int,
            "frame_end": _int,
            "fps": {"type": "number"},
            "fps_base": {"type": "number"},
        },
    },
    "Failure": {
        "type": "object",
        "properties": {"node": _str, "message": _str, "log": {"type": "array", "items": _str}},
    },
    "FailureAnswer": {
        "type": "object",
        "properties": {"recorded": {"type": "boolean"}, "project_error": {"type": "boolean"}},
    },
}


def api(
    summary: str,
    *,
    request: str | None = None,
    response: str | None = None,
    media: str | None = None,
    status: int = 200,
    auth: str | None = None,
    body: str | None = None,
) -> Callable[[F], F]:
    """Describe an endpoint for the OpenAPI document."""

    def mark(fn: F) -> F:
        fn.openapi = {  # type: ignore[attr-defined]
            "summary": summary,
            "request": request,
            "response": response,
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
    error = {"description": "error", "content": {"application/json": {"schema": _ref("Error")}}}
    for code in ("400", "404", "409", "413"):
        op["responses"][code] = error
    if note["auth"] == "token":
        op["security"] = [{"nodeToken": []}]
        op["responses"]["401"] = error
    if note["auth"] == "password":
        op["security"] = [{"adminPassword": []}]
        op["responses"]["403"] = error
        op["responses"]["429"] = error
    if note["request"] == "Submission":
        op["requestBody"] = {
            "required": True,
            "content": {"multipart/form-data": {"schema": _ref("Submission")}},
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
    """The OpenAPI 3.1 document of every API route."""
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
            "schemas": SCHEMAS,
            "securitySchemes": {
                "nodeToken": {"type": "http", "scheme": "bearer"},
                "adminPassword": {"type": "apiKey", "in": "header", "name": "X-Blendfarm-Password"},
            },
        },
    }
