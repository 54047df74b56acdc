"""Routes that need the admin password, and the Blender the server hands out."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from ..errors import BadInput
from .openapi import api
from .requests import (
    admin_auth,
    body_to_file,
    check_room,
    farm_of,
    json_body,
    node_auth,
)

log = logging.getLogger("blendfarm.server")


@api("Delete every project, chunk and node (admin password).", response="Purged", auth="password")
async def purge(request: Request) -> Response:
    farm = admin_auth(request)

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
    farm = admin_auth(request)
    body = await json_body(request)
    new = body.get("password")
    if not isinstance(new, str) or not 8 <= len(new) <= 200:
        raise BadInput("the new password must be 8 to 200 characters")
    await run_in_threadpool(farm.change_password, new)
    return JSONResponse({"ok": True})


@api("The server's Blender and the one every node runs.", response="BlenderStatus")
async def blender_status(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(farm_of(request).blender_status))


@api(
    "Upload an official blender-*-linux-*.tar.xz for every node (admin password).",
    response="BlenderStatus",
    auth="password",
    body="application/octet-stream",
)
async def blender_upload(request: Request) -> Response:
    farm = admin_auth(request)
    filename = request.query_params.get("filename", "")
    await check_room(request, farm)
    tmp = await body_to_file(request, farm, farm.settings.max_upload)
    info = await run_in_threadpool(farm.blender.accept, tmp, filename)
    log.info("new Blender for the farm: %s (%s)", info["filename"], info["sha256"][:12])
    return JSONResponse(await run_in_threadpool(farm.blender_status))


@api("The server's Blender tarball, for nodes (token).", media="application/x-xz", auth="token")
async def blender_download(request: Request) -> Response:
    farm = node_auth(request)
    path = await run_in_threadpool(farm.blender.path)
    info = farm.blender.info() or {}
    return FileResponse(
        path,
        media_type="application/octet-stream",
        headers={"X-Sha256": str(info.get("sha256", ""))},
    )
