"""The JSON API (`create_app`) and the static dashboard app (`create_ui_app`)."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..errors import BlendfarmError, error_body
from ..settings import Settings
from . import routes_admin as admin
from . import routes_controls as controls
from . import routes_nodes as nodes
from . import routes_projects as projects
from .fast_routes import FastRoutes
from .openapi import api, openapi_document
from .origins import HostAndOrigin, origins_on, server_names
from .services import Background, build_farm
from .store import Store

log = logging.getLogger("blendfarm.server")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


@api("This document.", media="application/json")
async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.routes, __version__))


ROUTES = [
    Route("/api/health", projects.health, methods=["GET"]),
    Route("/api/status", projects.status, methods=["GET"]),
    Route("/api/events", projects.events, methods=["GET"]),
    Route("/api/openapi.json", openapi, methods=["GET"]),
    Route("/api/projects", projects.list_projects, methods=["GET"]),
    Route("/api/projects", projects.submit_project, methods=["POST"]),
    Route("/api/projects/{pid}", projects.get_project, methods=["GET"]),
    Route("/api/projects/{pid}", projects.delete_project, methods=["DELETE"]),
    Route("/api/projects/{pid}/retry", projects.retry_project, methods=["POST"]),
    Route("/api/projects/{pid}/priority", controls.set_priority, methods=["POST"]),
    Route("/api/projects/{pid}/pause", controls.pause_project, methods=["POST"]),
    Route("/api/projects/{pid}/resume", controls.resume_project, methods=["POST"]),
    Route("/api/projects/{pid}/cancel", controls.cancel_project, methods=["POST"]),
    Route("/api/projects/{pid}/requeue", controls.requeue_project, methods=["POST"]),
    Route("/api/projects/{pid}/result", projects.project_result, methods=["GET"]),
    Route("/api/projects/{pid}/raw", projects.project_raw, methods=["GET"]),
    Route("/api/projects/{pid}/frames", projects.project_frames, methods=["GET"]),
    Route("/api/projects/{pid}/frames/{frame}", projects.project_frame, methods=["GET"]),
    Route("/api/projects/{pid}/thumbnail", projects.project_thumbnail, methods=["GET"]),
    Route("/api/projects/{pid}/preview", projects.project_preview, methods=["GET"]),
    Route("/api/projects/{pid}/archive", projects.project_archive, methods=["GET"]),
    Route("/api/nodes", projects.list_nodes, methods=["GET"]),
    Route("/api/nodes/{name}/log", projects.node_log, methods=["GET"]),
    Route("/api/nodes/{name}/disable", controls.disable_node, methods=["POST"]),
    Route("/api/nodes/{name}/enable", controls.enable_node, methods=["POST"]),
    Route("/api/nodes/{name}/register", nodes.node_register, methods=["POST"]),
    Route("/api/nodes/{name}/heartbeat", nodes.node_heartbeat, methods=["POST"]),
    Route("/api/nodes/{name}/lease", nodes.node_lease, methods=["POST"]),
    Route("/api/nodes/{name}/stops", nodes.node_stops, methods=["GET"]),
    Route("/api/nodes/{name}/leave", nodes.node_leave, methods=["POST"]),
    Route("/api/tasks/{task_id}/result", nodes.task_result, methods=["PUT"]),
    Route("/api/tasks/{task_id}/passes", nodes.task_passes, methods=["GET"]),
    Route("/api/tasks/{task_id}/probe", nodes.task_probe, methods=["POST"]),
    Route("/api/tasks/{task_id}/fail", nodes.task_fail, methods=["POST"]),
    Route("/api/tasks/{task_id}/release", nodes.task_release, methods=["POST"]),
    Route("/api/logs", admin.server_log, methods=["GET"]),
    Route("/api/purge", admin.purge, methods=["POST"]),
    Route("/api/blender", admin.blender_status, methods=["GET"]),
    Route("/api/blender", admin.blender_upload, methods=["PUT"]),
    Route("/api/blender/download", admin.blender_download, methods=["GET"]),
    Route("/api/password", admin.change_password, methods=["POST"]),
]


# What every node calls for every chunk: taken without the framework's layers (FastRoutes).
HOT_ROUTES = [
    r for r in ROUTES if r.endpoint in (nodes.task_result, nodes.node_lease, nodes.node_heartbeat)
]


async def _blendfarm_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BlendfarmError)
    return JSONResponse(error_body(exc.status, exc.code, exc.message), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(exc.status_code, code, str(exc.detail)), status_code=exc.status_code
    )


async def _server_error(request: Request, exc: Exception) -> Response:
    full_db = isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc)
    if full_db or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC):
        log.error("the data disk is full (%s %s)", request.method, request.url.path)
        return JSONResponse(
            error_body(507, "insufficient_storage", "the server's disk is full"), status_code=507
        )
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body(500, "internal", "internal server error (see the server log)"),
        status_code=500,
    )


def create_app(
    settings: Settings, store: Store | None = None, background: bool = True
) -> Starlette:
    """The JSON API. `background=False` leaves lease expiry and compositing to the caller."""
    farm = build_farm(settings, store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.stopping = asyncio.Event()
        worker = Background(farm) if background else None
        if worker:
            worker.start()
        try:
            yield
        finally:
            app.state.stopping.set()
            if worker:
                await run_in_threadpool(worker.stop)

    names = server_names(settings.host, settings.allowed_hosts.split(","))
    dashboard = origins_on(names, settings.ui_port, settings.ui_origin)
    own = dashboard + origins_on(names, settings.api_port)
    handlers = {
        BlendfarmError: _blendfarm_error,
        HTTPException: _http_error,
        Exception: _server_error,
    }
    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(HostAndOrigin, names=names, origins=own),
            Middleware(FastRoutes, routes=HOT_ROUTES, handlers=handlers),
            Middleware(
                CORSMiddleware,
                allow_origins=dashboard,
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=[
                    "Content-Type",
                    "X-Blendfarm-Password",
                    "X-Blendfarm-Owner-Key",
                    "Authorization",
                ],
                expose_headers=["ETag", "X-Preview-Frame", "X-Preview-Chunks"],
            ),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.farm = farm
    app.state.stopping = asyncio.Event()
    return app


def create_ui_app(settings: Settings, static_dir: Path = STATIC_DIR) -> Starlette:
    """The dashboard: static files, and a /config.js that tells the pages the API's port."""

    async def config_js(request: Request) -> Response:
        return Response(
            f"window.BLENDFARM_API_PORT = {int(settings.api_port)};\n",
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    names = server_names(settings.host, settings.allowed_hosts.split(","))
    app = Starlette(
        routes=[Route("/config.js", config_js, methods=["GET"])],
        middleware=[Middleware(HostAndOrigin, names=names, origins=())],
        exception_handlers={HTTPException: _http_error},
    )
    app.mount("/", StaticFiles(directory=static_dir, html=True), name="static")
    return app
