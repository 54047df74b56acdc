"""The JSON API (`create_app`) and the static dashboard app (`create_ui_app`)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..errors import BadInput, BlendfarmError, TooLarge, error_body
from ..settings import Settings
from .auth import Guard, load_secrets
from .compositing import Background
from .farm import Farm
from .files import DataDir
from .openapi import api, openapi_document
from .store import Store
from .validate import parse_submission

log = logging.getLogger("blendfarm.server")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_CHUNK_UPLOAD = 4 * 1024**3
MAX_LOG_BODY = 16 * 1024**2  # log lines past the kept amount are truncated, not refused
EVENT_INTERVAL = 0.5
KEEPALIVE = 15.0

Endpoint = Callable[[Request], Awaitable[Response]]


def _farm(request: Request) -> Farm:
    farm: Farm = request.app.state.farm
    return farm


def _node_auth(request: Request) -> Farm:
    farm = _farm(request)
    farm.guard.check_token(request.headers.get("authorization"))
    return farm


def _admin_auth(request: Request) -> Farm:
    farm = _farm(request)
    client = request.client.host if request.client else "?"
    farm.guard.check_password(request.headers.get("x-blendfarm-password"), client)
    return farm


async def _json_body(request: Request, limit: int = 1024 * 1024) -> dict[str, Any]:
    body = await request.body()
    if len(body) > limit:
        raise TooLarge("the request body is too large")
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadInput("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    return data


def _task_id(request: Request) -> int:
    raw = request.path_params["task_id"]
    if not str(raw).isdigit() or len(str(raw)) > 12:
        raise BadInput("the task id must be a number")
    return int(raw)


async def _body_to_file(request: Request, farm: Farm, limit: int) -> Path:
    """Stream a raw request body to a temporary file in the data dir."""
    tmp = farm.data.temp_file()
    size = 0
    try:
        with open(tmp, "wb") as fh:
            async for block in request.stream():
                size += len(block)
                if size > limit:
                    raise TooLarge(f"the upload is larger than {limit} bytes")
                fh.write(block)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


# -- projects -----------------------------------------------------------------------------------


@api("List every project.", response="ProjectList")
async def list_projects(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_farm(request).projects))


@api(
    "Submit a project: a zip of the project folder (or a lone .blend) and how to render it.",
    request="Submission",
    response="Project",
    status=201,
)
async def submit_project(request: Request) -> Response:
    farm = _farm(request)
    settings = farm.settings
    length = request.headers.get("content-length")
    if length and length.isdigit():
        if int(length) > settings.max_upload:
            raise TooLarge(f"the upload is larger than {settings.max_upload} bytes")
        await run_in_threadpool(farm.data.require_free, int(length), settings.disk_reserve)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise BadInput("send the project as multipart/form-data with a 'file' field")
    try:
        form = await request.form(max_files=1, max_fields=20)
    except (ValueError, KeyError, AssertionError) as exc:
        raise BadInput(f"the form could not be read: {exc}") from None
    except HTTPException as exc:
        raise BadInput(f"the form could not be read: {exc.detail}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadInput("the form has no 'file' with the project")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if any(isinstance(v, UploadFile) for k, v in form.multi_items() if k != "file"):
            raise BadInput("only the 'file' field may hold a file")
        sub = parse_submission(fields, settings.max_tiles)
        tmp = farm.data.temp_file()
        try:
            with open(tmp, "wb") as fh:
                while block := await upload.read(1024 * 1024):
                    fh.write(block)
            view = await run_in_threadpool(farm.submit, tmp, upload.filename or "", sub)
        finally:
            tmp.unlink(missing_ok=True)  # adopted into the project on success
    finally:
        await form.close()
    return JSONResponse(view, status_code=201)


@api("One project.", response="Project")
async def get_project(request: Request) -> Response:
    farm = _farm(request)
    return JSONResponse(await run_in_threadpool(farm.project_view, request.path_params["pid"]))


@api("Delete a project and everything it stored.", response="Deleted")
async def delete_project(request: Request) -> Response:
    farm = _farm(request)
    return JSONResponse(await run_in_threadpool(farm.delete, request.path_params["pid"]))


@api("Put a project in error back in the queue.", response="Project")
async def retry_project(request: Request) -> Response:
    farm = _farm(request)
    return JSONResponse(await run_in_threadpool(farm.retry, request.path_params["pid"]))


@api("The finished image (PNG) or animation (mp4).", media="application/octet-stream")
async def project_result(request: Request) -> Response:
    path, media, name = await run_in_threadpool(
        _farm(request).finished_file, request.path_params["pid"], "result"
    )
    return FileResponse(path, media_type=media, filename=name, content_disposition_type="inline")


@api("The raw chunks as a zip.", media="application/zip")
async def project_raw(request: Request) -> Response:
    path, media, name = await run_in_threadpool(
        _farm(request).finished_file, request.path_params["pid"], "raw"
    )
    return FileResponse(path, media_type=media, filename=name)


@api("A small PNG of the latest stitched frame.", media="image/png")
async def project_thumbnail(request: Request) -> Response:
    path = await run_in_threadpool(_farm(request).thumbnail, request.path_params["pid"])
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


@api("The project's archive, for nodes (token).", media="application/zip", auth="token")
async def project_archive(request: Request) -> Response:
    farm = _node_auth(request)
    path, sha = await run_in_threadpool(farm.archive, request.path_params["pid"])
    return FileResponse(path, media_type="application/zip", headers={"X-Sha256": sha})


# -- the farm ---------------------------------------------------------------------------------


@api("Is the server up?", response="Health")
async def health(request: Request) -> Response:
    farm = _farm(request)
    return JSONResponse({"ok": True, "version": __version__, "server_id": farm.store.server_id})


@api("Projects, nodes and disk use at once.", response="Status")
async def status(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_farm(request).status))


@api("The same as /api/status, as a server-sent event on every change.", media="text/event-stream")
async def events(request: Request) -> Response:
    farm = _farm(request)
    stopping: asyncio.Event = request.app.state.stopping

    async def stream() -> AsyncIterator[str]:
        seen = -1
        quiet = 0.0
        while not stopping.is_set():
            if await request.is_disconnected():
                return
            version = farm.store.version
            if version != seen:
                seen = version
                quiet = 0.0
                payload = await run_in_threadpool(farm.status)
                yield f"event: status\ndata: {json.dumps(payload)}\n\n"
            elif quiet >= KEEPALIVE:
                quiet = 0.0
                yield ": keep-alive\n\n"
            await asyncio.sleep(EVENT_INTERVAL)
            quiet += EVENT_INTERVAL

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@api("Every node seen in the last hour.", response="NodeList")
async def list_nodes(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_farm(request).nodes))


@api("A node's recent log.", response="Lines")
async def node_log(request: Request) -> Response:
    farm = _farm(request)
    return JSONResponse(
        {"lines": await run_in_threadpool(farm.node_log, request.path_params["name"])}
    )


@api("The server's recent log.", response="Lines")
async def server_log(request: Request) -> Response:
    return JSONResponse({"lines": list(_farm(request).logs.lines)})


@api("Delete every project, chunk and node (admin password).", response="Purged", auth="password")
async def purge(request: Request) -> Response:
    farm = _admin_auth(request)

    def run() -> None:
        farm.store.purge()
        farm.data.purge()
        log.warning("database purged")

    await run_in_threadpool(run)
    return JSONResponse({"purged": True})


@api(
    "Change the admin password (admin password).",
    request="NewPassword",
    response="Ok",
    auth="password",
)
async def change_password(request: Request) -> Response:
    farm = _admin_auth(request)
    body = await _json_body(request)
    new = body.get("password")
    if not isinstance(new, str) or not 8 <= len(new) <= 200:
        raise BadInput("the new password must be 8 to 200 characters")
    await run_in_threadpool(farm.change_password, new)
    return JSONResponse({"ok": True})


@api("The server's Blender and the one every node runs.", response="BlenderStatus")
async def blender_status(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_farm(request).blender_status))


@api(
    "Upload an official blender-*-linux-*.tar.xz for every node (admin password).",
    response="BlenderStatus",
    auth="password",
    body="application/x-xz",
)
async def blender_upload(request: Request) -> Response:
    farm = _admin_auth(request)
    filename = request.query_params.get("filename", "")
    length = request.headers.get("content-length")
    if length and length.isdigit():
        await run_in_threadpool(farm.data.require_free, int(length), farm.settings.disk_reserve)
    tmp = await _body_to_file(request, farm, farm.settings.max_upload)
    info = await run_in_threadpool(farm.blender.accept, tmp, filename)
    log.info("new Blender for the farm: %s (%s)", info["filename"], info["sha256"][:12])
    return JSONResponse(await run_in_threadpool(farm.blender_status))


@api("The server's Blender tarball, for nodes (token).", media="application/x-xz", auth="token")
async def blender_download(request: Request) -> Response:
    farm = _node_auth(request)
    path = await run_in_threadpool(farm.blender.path)
    info = farm.blender.info() or {}
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={"X-Sha256": str(info.get("sha256", ""))},
    )


# -- nodes ----------------------------------------------------------------------------------------


def _node_name(request: Request) -> str:
    name = request.path_params["name"]
    if not (1 <= len(name) <= 64) or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise BadInput("a node name is 1-64 letters, digits, '-', '_' or '.'")
    return str(name)


@api("A node says hello (token).", request="NodeHello", response="NodeWelcome", auth="token")
async def node_register(request: Request) -> Response:
    farm = _node_auth(request)
    name = _node_name(request)
    body = await _json_body(request)
    info: dict[str, Any] = {}
    for key, kind in (
        ("blender_version", str),
        ("hostname", str),
        ("cores", int),
        ("version", str),
        ("blender_sha256", str),
    ):
        if key in body:
            if not isinstance(body[key], kind) or isinstance(body[key], bool):
                raise BadInput(f"{key} must be a {kind.__name__}")
            info[key] = body[key][:100] if isinstance(body[key], str) else body[key]
    return JSONResponse(await run_in_threadpool(farm.register, name, info))


@api(
    "A node is alive; renews its leases and sends log lines (token).",
    request="Heartbeat",
    response="HeartbeatAnswer",
    auth="token",
)
async def node_heartbeat(request: Request) -> Response:
    farm = _node_auth(request)
    name = _node_name(request)
    body = await _json_body(request, limit=MAX_LOG_BODY)
    ids = body.get("tasks") or []
    if (
        not isinstance(ids, list)
        or len(ids) > 100
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**62 for i in ids)
    ):
        raise BadInput("tasks must be a list of task ids")
    answer = await run_in_threadpool(farm.heartbeat, name, ids, body.get("log") or [])
    return JSONResponse(answer)


@api("A node asks for work (token); 204 when there is none.", response="Task", auth="token")
async def node_lease(request: Request) -> Response:
    farm = _node_auth(request)
    task = await run_in_threadpool(farm.lease, _node_name(request))
    if task is None:
        return Response(status_code=204)
    return JSONResponse(task)


@api("A node leaves (token).", response="Ok", auth="token")
async def node_leave(request: Request) -> Response:
    farm = _node_auth(request)
    await run_in_threadpool(farm.store.node_left, _node_name(request))
    return JSONResponse({"ok": True})


@api("A chunk's PNG (token, raw body).", response="Accepted", auth="token", body="image/png")
async def task_result(request: Request) -> Response:
    farm = _node_auth(request)
    tid = _task_id(request)
    lease = request.query_params.get("lease", "")
    await run_in_threadpool(farm._leased_task, tid, lease)
    tmp = await _body_to_file(request, farm, MAX_CHUNK_UPLOAD)
    return JSONResponse(await run_in_threadpool(farm.chunk_result, tid, lease, tmp))


@api("What a probe found in the scene (token).", request="Probe", response="Accepted", auth="token")
async def task_probe(request: Request) -> Response:
    farm = _node_auth(request)
    body = await _json_body(request)
    tid, lease = _task_id(request), request.query_params.get("lease", "")
    return JSONResponse(await run_in_threadpool(farm.probe_result, tid, lease, body))


@api("A task failed on a node (token).", request="Failure", response="FailureAnswer", auth="token")
async def task_fail(request: Request) -> Response:
    farm = _node_auth(request)
    body = await _json_body(request, limit=MAX_LOG_BODY)
    node = str(body.get("node", ""))[:64] or "unknown"
    answer = await run_in_threadpool(
        farm.task_failed,
        _task_id(request),
        request.query_params.get("lease", ""),
        node,
        str(body.get("message", ""))[:4000],
        body.get("log") or [],
    )
    return JSONResponse(answer)


@api("A node hands a task back unfinished (token).", response="Ok", auth="token")
async def task_release(request: Request) -> Response:
    farm = _node_auth(request)
    tid, lease = _task_id(request), request.query_params.get("lease", "")
    await run_in_threadpool(farm.release, tid, lease)
    return JSONResponse({"ok": True})


@api("This document.", media="application/json")
async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(request.app.routes, __version__))


ROUTES = [
    Route("/api/health", health, methods=["GET"]),
    Route("/api/status", status, methods=["GET"]),
    Route("/api/events", events, methods=["GET"]),
    Route("/api/openapi.json", openapi, methods=["GET"]),
    Route("/api/projects", list_projects, methods=["GET"]),
    Route("/api/projects", submit_project, methods=["POST"]),
    Route("/api/projects/{pid}", get_project, methods=["GET"]),
    Route("/api/projects/{pid}", delete_project, methods=["DELETE"]),
    Route("/api/projects/{pid}/retry", retry_project, methods=["POST"]),
    Route("/api/projects/{pid}/result", project_result, methods=["GET"]),
    Route("/api/projects/{pid}/raw", project_raw, methods=["GET"]),
    Route("/api/projects/{pid}/thumbnail", project_thumbnail, methods=["GET"]),
    Route("/api/projects/{pid}/archive", project_archive, methods=["GET"]),
    Route("/api/nodes", list_nodes, methods=["GET"]),
    Route("/api/nodes/{name}/log", node_log, methods=["GET"]),
    Route("/api/nodes/{name}/register", node_register, methods=["POST"]),
    Route("/api/nodes/{name}/heartbeat", node_heartbeat, methods=["POST"]),
    Route("/api/nodes/{name}/lease", node_lease, methods=["POST"]),
    Route("/api/nodes/{name}/leave", node_leave, methods=["POST"]),
    Route("/api/tasks/{task_id}/result", task_result, methods=["PUT"]),
    Route("/api/tasks/{task_id}/probe", task_probe, methods=["POST"]),
    Route("/api/tasks/{task_id}/fail", task_fail, methods=["POST"]),
    Route("/api/tasks/{task_id}/release", task_release, methods=["POST"]),
    Route("/api/logs", server_log, methods=["GET"]),
    Route("/api/purge", purge, methods=["POST"]),
    Route("/api/blender", blender_status, methods=["GET"]),
    Route("/api/blender", blender_upload, methods=["PUT"]),
    Route("/api/blender/download", blender_download, methods=["GET"]),
    Route("/api/password", change_password, methods=["POST"]),
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
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        log.error("the data disk is full (%s %s)", request.method, request.url.path)
        return JSONResponse(
            error_body(507, "insufficient_storage", "the server's disk is full"), status_code=507
        )
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body(500, "internal", "internal server error (see the server log)"),
        status_code=500,
    )


def build_farm(settings: Settings, store: Store | None = None) -> Farm:
    """The farm behind an app: data dir, database, secrets."""
    data = DataDir(settings.data)
    store = store or Store(data.db_path)
    secrets = load_secrets(data.root, settings.token, settings.password)
    return Farm(settings, store, data, Guard(secrets))


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

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=[settings.cors_origin()],
                allow_methods=["GET", "POST", "PUT", "DELETE"],
                allow_headers=["Content-Type", "X-Blendfarm-Password", "Authorization"],
            )
        ],
        exception_handlers={
            BlendfarmError: _blendfarm_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.farm = farm
    app.state.stopping = asyncio.Event()
    return app


def create_ui_app(static_dir: Path = STATIC_DIR) -> Starlette:
    """The dashboard: static files only; the pages call the API on its own port."""
    return (
        Starlette(
            routes=[],
            exception_handlers={HTTPException: _http_error},
        )
        if not static_dir.exists()
        else _static_app(static_dir)
    )


def _static_app(static_dir: Path) -> Starlette:
    app = Starlette(exception_handlers={HTTPException: _http_error})
    app.mount("/", StaticFiles(directory=static_dir, html=True), name="static")
    return app
