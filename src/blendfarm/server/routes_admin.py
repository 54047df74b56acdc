"""Routes that need the admin password, and the Blender the server hands out."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from .. import protocol as p
from ..errors import BadInput
from .openapi import api
from .requests import (
    MessageResponse,
    admin_auth,
    farm_of,
    message_body,
    node_auth,
)
from .uploads import check_declared, receive_body


@api("Delete every project, chunk and node (admin password).", response=p.Purged, auth="password")
async def purge(request: Request) -> Response:
    farm = await admin_auth(request)
    return MessageResponse(await run_in_threadpool(farm.admin.purge))


@api(
    "Change the admin password (admin password).",
    request=p.NewPassword,
    response=p.Ok,
    auth="password",
)
async def change_password(request: Request) -> Response:
    farm = await admin_auth(request)
    try:
        body = await message_body(request, p.NewPassword)
    except BadInput:
        raise BadInput("the new password must be 8 to 200 characters") from None
    return MessageResponse(await run_in_threadpool(farm.admin.change_password, body.password))


@api("The server's recent log (admin password).", response=p.Lines, auth="password")
async def server_log(request: Request) -> Response:
    farm = await admin_auth(request)
    return MessageResponse(farm.admin.server_log())


@api("The server's Blender and the one every node runs.", response=p.BlenderStatus)
async def blender_status(request: Request) -> Response:
    return MessageResponse(await run_in_threadpool(farm_of(request).views.blender_status))


@api(
    "Upload an official blender-*-linux-*.tar.xz for every node (admin password).",
    response=p.BlenderStatus,
    auth="password",
    body="application/octet-stream",
)
async def blender_upload(request: Request) -> Response:
    farm = await admin_auth(request)
    filename = request.query_params.get("filename", "")
    limit, reserve = farm.settings.max_upload, farm.settings.disk_reserve
    await check_declared(request, farm.data, limit, reserve)
    tmp = await receive_body(request, farm.data, limit, reserve)
    return MessageResponse(await run_in_threadpool(farm.admin.accept_blender, tmp, filename))


@api("The server's Blender tarball, for nodes (token).", media="application/x-xz", auth="token")
async def blender_download(request: Request) -> Response:
    farm = node_auth(request)
    status = await run_in_threadpool(farm.views.blender_status)
    path = await run_in_threadpool(farm.admin.blender.path)
    return FileResponse(
        path, media_type="application/octet-stream", headers={"X-Sha256": status.sha256 or ""}
    )
