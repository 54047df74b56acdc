"""Routes for people: projects, results, the farm at a glance, the event stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from .. import __version__
from ..errors import BadInput
from .openapi import api
from .requests import (
    EVENT_INTERVAL,
    KEEPALIVE,
    check_room,
    farm_of,
    node_auth,
)
from .validate import parse_submission

log = logging.getLogger("blendfarm.server")

# -- projects -----------------------------------------------------------------------------------


@api("List every project.", response="ProjectList")
async def list_projects(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(farm_of(request).projects))


@api(
    "Submit a project: a zip of the project folder (or a lone .blend) and how to render it.",
    request="Submission",
    response="Project",
    status=201,
)
async def submit_project(request: Request) -> Response:
    farm = farm_of(request)
    settings = farm.settings
    await check_room(request, farm)
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
    farm = farm_of(request)
    return JSONResponse(await run_in_threadpool(farm.project_view, request.path_params["pid"]))


@api("Delete a project and everything it stored.", response="Deleted")
async def delete_project(request: Request) -> Response:
    farm = farm_of(request)
    return JSONResponse(await run_in_threadpool(farm.delete, request.path_params["pid"]))


@api("Put a project in error back in the queue.", response="Project")
async def retry_project(request: Request) -> Response:
    farm = farm_of(request)
    return JSONResponse(await run_in_threadpool(farm.retry, request.path_params["pid"]))


@api("The finished image (PNG) or animation (mp4).", media="application/octet-stream")
async def project_result(request: Request) -> Response:
    path, media, name = await run_in_threadpool(
        farm_of(request).finished_file, request.path_params["pid"], "result"
    )
    return FileResponse(path, media_type=media, filename=name, content_disposition_type="inline")


@api("The raw chunks as a zip.", media="application/zip")
async def project_raw(request: Request) -> Response:
    path, media, name = await run_in_threadpool(
        farm_of(request).finished_file, request.path_params["pid"], "raw"
    )
    return FileResponse(path, media_type=media, filename=name)


@api("A small PNG of the latest stitched frame.", media="image/png")
async def project_thumbnail(request: Request) -> Response:
    path = await run_in_threadpool(farm_of(request).thumbnail, request.path_params["pid"])
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


@api("The project's archive, for nodes (token).", media="application/zip", auth="token")
async def project_archive(request: Request) -> Response:
    farm = node_auth(request)
    path, sha = await run_in_threadpool(farm.archive, request.path_params["pid"])
    return FileResponse(path, media_type="application/zip", headers={"X-Sha256": sha})


# -- the farm ---------------------------------------------------------------------------------


@api("Is the server up?", response="Health")
async def health(request: Request) -> Response:
    farm = farm_of(request)
    return JSONResponse({"ok": True, "version": __version__, "server_id": farm.store.db.server_id})


@api("Projects, nodes and disk use at once.", response="Status")
async def status(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(farm_of(request).status))


@api("The same as /api/status, as a server-sent event on every change.", media="text/event-stream")
async def events(request: Request) -> Response:
    farm = farm_of(request)
    stopping: asyncio.Event = request.app.state.stopping

    async def stream() -> AsyncIterator[str]:
        seen = -1
        quiet = 0.0
        while not stopping.is_set():
            if await request.is_disconnected():
                return
            version = farm.store.db.version
            if version != seen:
                seen = version
                quiet = 0.0
                payload = await run_in_threadpool(farm.status_event, version)
                yield payload
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
    return JSONResponse(await run_in_threadpool(farm_of(request).nodes))


@api("A node's recent log.", response="Lines")
async def node_log(request: Request) -> Response:
    farm = farm_of(request)
    return JSONResponse(
        {"lines": await run_in_threadpool(farm.node_log, request.path_params["name"])}
    )


@api("The server's recent log.", response="Lines")
async def server_log(request: Request) -> Response:
    return JSONResponse({"lines": list(farm_of(request).logs.lines)})
