"""Routes for people: projects, results, the farm at a glance, the event stream."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from .. import protocol as p
from ..errors import BadInput
from .openapi import api
from .requests import (
    EVENT_INTERVAL,
    KEEPALIVE,
    MessageResponse,
    credentials,
    farm_of,
    node_auth,
    project_id,
)
from .uploads import check_declared, discard, receive_form
from .validate import parse_submission

log = logging.getLogger("blendfarm.server")

# -- projects -----------------------------------------------------------------------------------


@api("List every project.", response=list[p.Project])
async def list_projects(request: Request) -> Response:
    return MessageResponse(await run_in_threadpool(farm_of(request).views.projects))


@api(
    "Submit a project: a zip of the project folder (or a lone .blend) and how to render it.",
    request=p.SubmissionForm,
    response=p.Project,
    status=201,
)
async def submit_project(request: Request) -> Response:
    farm = farm_of(request)
    limit, reserve = farm.settings.max_upload, farm.settings.disk_reserve
    await check_declared(request, farm.data, limit, reserve)
    form = await receive_form(request, farm.data, limit, reserve)
    try:
        sub = parse_submission(form.fields, farm.settings.max_tiles)
        assert form.file is not None
        view = await run_in_threadpool(
            farm.submissions.submit, form.file, form.filename, sub, form.sha256
        )
    finally:
        discard(form.file)  # adopted into the project on success
    return MessageResponse(view, status_code=201)


@api("One project.", response=p.Project)
async def get_project(request: Request) -> Response:
    farm = farm_of(request)
    return MessageResponse(await run_in_threadpool(farm.views.project, project_id(request)))


@api(
    "Delete a project and everything it stored (owner key or admin password).",
    response=p.Deleted,
    auth="owner",
)
async def delete_project(request: Request) -> Response:
    farm, who = farm_of(request), credentials(request)
    return MessageResponse(
        await run_in_threadpool(farm.submissions.delete, project_id(request), who)
    )


@api(
    "Put a project in error back in the queue (owner key or admin password).",
    response=p.Project,
    auth="owner",
)
async def retry_project(request: Request) -> Response:
    farm, who = farm_of(request), credentials(request)
    return MessageResponse(
        await run_in_threadpool(farm.submissions.retry, project_id(request), who)
    )


@api(
    "The finished still in the scene's format (PNG, JPEG, TIFF, OpenEXR) or animation (mp4).",
    media="application/octet-stream",
)
async def project_result(request: Request) -> Response:
    path, media, name = await run_in_threadpool(
        farm_of(request).views.finished_file, project_id(request), "result"
    )
    return FileResponse(path, media_type=media, filename=name, content_disposition_type="inline")


@api("A finished animation's frames in the scene's format, as a zip.", media="application/zip")
async def project_frames(request: Request) -> Response:
    path, media, name = await run_in_threadpool(
        farm_of(request).views.finished_file, project_id(request), "frames"
    )
    return FileResponse(path, media_type=media, filename=name)


@api("One frame of a finished project, in the scene's format.", media="application/octet-stream")
async def project_frame(request: Request) -> Response:
    text = str(request.path_params["frame"])
    if not re.fullmatch(r"-?[0-9]{1,9}", text):
        raise BadInput(f"{text[:20]!r} is not a frame number")
    path, media, name = await run_in_threadpool(
        farm_of(request).views.frame_file, project_id(request), int(text)
    )
    return FileResponse(path, media_type=media, filename=name)


@api(
    "The raw chunks as a zip; of a cancelled project, its done chunks and stitched frames.",
    media="application/zip",
)
async def project_raw(request: Request) -> Response:
    path, media, name = await run_in_threadpool(
        farm_of(request).controls.raw_file, project_id(request)
    )
    return FileResponse(path, media_type=media, filename=name)


@api("A small PNG of the latest stitched frame.", media="image/png")
async def project_thumbnail(request: Request) -> Response:
    path = await run_in_threadpool(farm_of(request).views.thumbnail, project_id(request))
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


@api(
    "A PNG (at most 1024 px) of a frame as stitched so far: `?frame=N`, or the current frame."
    " Chunks not in yet are transparent; the ETag changes whenever a chunk of the frame lands;"
    " X-Preview-Frame and X-Preview-Chunks (in/total) say what it shows.",
    media="image/png",
)
async def project_preview(request: Request) -> Response:
    previews, pid = farm_of(request).previews, project_id(request)
    frame = request.query_params.get("frame")
    tag = await run_in_threadpool(previews.etag, pid, frame)
    headers = {"Cache-Control": "no-cache", "ETag": f'"{tag}"'}
    if f'"{tag}"' in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    shown = await run_in_threadpool(previews.preview, pid, frame)
    headers["ETag"] = f'"{shown.etag}"'
    headers["X-Preview-Frame"] = str(shown.frame)
    headers["X-Preview-Chunks"] = f"{shown.chunks_in}/{shown.chunks_total}"
    return Response(shown.png, media_type="image/png", headers=headers)


@api("The project's archive, for nodes (token).", media="application/zip", auth="token")
async def project_archive(request: Request) -> Response:
    farm = node_auth(request)
    path, sha = await run_in_threadpool(farm.dispatch.archive, project_id(request))
    return FileResponse(path, media_type="application/zip", headers={"X-Sha256": sha})


# -- the farm ---------------------------------------------------------------------------------


@api("Is the server up?", response=p.Health)
async def health(request: Request) -> Response:
    return MessageResponse(farm_of(request).views.health())


@api("Projects, nodes and disk use at once.", response=p.Status)
async def status(request: Request) -> Response:
    return MessageResponse(await run_in_threadpool(farm_of(request).views.status))


@api("The same as /api/status, as a server-sent event on every change.", media="text/event-stream")
async def events(request: Request) -> Response:
    views = farm_of(request).views
    stopping: asyncio.Event = request.app.state.stopping

    async def stream() -> AsyncIterator[bytes]:
        seen = -1
        quiet = 0.0
        while not stopping.is_set():
            if await request.is_disconnected():
                return
            version = views.version
            if version != seen:
                seen = version
                quiet = 0.0
                yield await run_in_threadpool(views.status_event, version)
            elif quiet >= KEEPALIVE:
                quiet = 0.0
                yield b": keep-alive\n\n"
            await asyncio.sleep(EVENT_INTERVAL)
            quiet += EVENT_INTERVAL

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@api("Every node seen in the last hour.", response=list[p.Node])
async def list_nodes(request: Request) -> Response:
    return MessageResponse(await run_in_threadpool(farm_of(request).views.nodes))


@api("A node's recent log.", response=p.Lines)
async def node_log(request: Request) -> Response:
    views = farm_of(request).views
    return MessageResponse(await run_in_threadpool(views.node_log, request.path_params["name"]))
