"""Routes that steer work under way: a project's priority, pause, resume, cancel and requeue
(owner key or admin password), and nodes disabled or enabled (admin password)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import protocol as p
from .openapi import api
from .requests import (
    MessageResponse,
    admin_auth,
    credentials,
    farm_of,
    message_body,
    project_id,
)


@api(
    "Change a project's priority, 0-100 (owner key or admin password).",
    request=p.PriorityChange,
    response=p.Project,
    auth="owner",
)
async def set_priority(request: Request) -> Response:
    farm, who = farm_of(request), credentials(request)
    body = await message_body(request, p.PriorityChange)
    return MessageResponse(
        await run_in_threadpool(farm.controls.set_priority, project_id(request), body.priority, who)
    )


@api(
    "Hand out no more of a project's chunks; those rendering finish (owner key or admin).",
    response=p.Project,
    auth="owner",
)
async def pause_project(request: Request) -> Response:
    farm, who = farm_of(request), credentials(request)
    return MessageResponse(await run_in_threadpool(farm.controls.pause, project_id(request), who))


@api("Let a paused project go on (owner key or admin password).", response=p.Project, auth="owner")
async def resume_project(request: Request) -> Response:
    farm, who = farm_of(request), credentials(request)
    return MessageResponse(await run_in_threadpool(farm.controls.resume, project_id(request), who))


@api(
    "Cancel a project: its nodes stop within a heartbeat, what is done is kept; retry revives "
    "it (owner key or admin password).",
    response=p.Project,
    auth="owner",
)
async def cancel_project(request: Request) -> Response:
    farm, who = farm_of(request), credentials(request)
    return MessageResponse(await run_in_threadpool(farm.controls.cancel, project_id(request), who))


@api(
    "Render frames or chunks of a project again, and what is made from them (owner key or "
    "admin password).",
    request=p.RequeueRequest,
    response=p.Requeued,
    auth="owner",
)
async def requeue_project(request: Request) -> Response:
    farm, who = farm_of(request), credentials(request)
    body = await message_body(request, p.RequeueRequest)
    return MessageResponse(
        await run_in_threadpool(farm.controls.requeue, project_id(request), body, who)
    )


@api(
    "A node finishes its chunk, then takes nothing until enabled (admin password).",
    response=p.Node,
    auth="password",
)
async def disable_node(request: Request) -> Response:
    farm = await admin_auth(request)
    name = str(request.path_params["name"])
    return MessageResponse(await run_in_threadpool(farm.controls.set_node_disabled, name, True))


@api("A disabled node takes work again (admin password).", response=p.Node, auth="password")
async def enable_node(request: Request) -> Response:
    farm = await admin_auth(request)
    name = str(request.path_params["name"])
    return MessageResponse(await run_in_threadpool(farm.controls.set_node_disabled, name, False))
