"""Routes for nodes (token): hello, heartbeat, leases, results, failures."""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import BadInput
from .openapi import api
from .requests import (
    MAX_CHUNK_UPLOAD,
    MAX_LOG_BODY,
    body_to_file,
    json_body,
    node_auth,
    task_id_of,
)

log = logging.getLogger("blendfarm.server")

# -- nodes ----------------------------------------------------------------------------------------


def _node_name(request: Request) -> str:
    name = request.path_params["name"]
    if not (1 <= len(name) <= 64) or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise BadInput("a node name is 1-64 letters, digits, '-', '_' or '.'")
    return str(name)


@api("A node says hello (token).", request="NodeHello", response="NodeWelcome", auth="token")
async def node_register(request: Request) -> Response:
    farm = node_auth(request)
    name = _node_name(request)
    body = await json_body(request)
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
    farm = node_auth(request)
    name = _node_name(request)
    body = await json_body(request, limit=MAX_LOG_BODY)
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
    farm = node_auth(request)
    task = await run_in_threadpool(farm.lease, _node_name(request))
    if task is None:
        return Response(status_code=204)
    return JSONResponse(task)


@api("A node leaves (token).", response="Ok", auth="token")
async def node_leave(request: Request) -> Response:
    farm = node_auth(request)
    await run_in_threadpool(farm.store.nodes.left, _node_name(request))
    return JSONResponse({"ok": True})


@api("A chunk's PNG (token, raw body).", response="Accepted", auth="token", body="image/png")
async def task_result(request: Request) -> Response:
    farm = node_auth(request)
    tid = task_id_of(request)
    lease = request.query_params.get("lease", "")
    await run_in_threadpool(farm._leased_task, tid, lease)
    tmp = await body_to_file(request, farm, MAX_CHUNK_UPLOAD)
    return JSONResponse(await run_in_threadpool(farm.chunk_result, tid, lease, tmp))


@api("What a probe found in the scene (token).", request="Probe", response="Accepted", auth="token")
async def task_probe(request: Request) -> Response:
    farm = node_auth(request)
    body = await json_body(request)
    tid, lease = task_id_of(request), request.query_params.get("lease", "")
    return JSONResponse(await run_in_threadpool(farm.probe_result, tid, lease, body))


@api("A task failed on a node (token).", request="Failure", response="FailureAnswer", auth="token")
async def task_fail(request: Request) -> Response:
    farm = node_auth(request)
    body = await json_body(request, limit=MAX_LOG_BODY)
    node = str(body.get("node", ""))[:64] or "unknown"
    answer = await run_in_threadpool(
        farm.task_failed,
        task_id_of(request),
        request.query_params.get("lease", ""),
        node,
        str(body.get("message", ""))[:4000],
        body.get("log") or [],
    )
    return JSONResponse(answer)


@api("A node hands a task back unfinished (token).", response="Ok", auth="token")
async def task_release(request: Request) -> Response:
    farm = node_auth(request)
    tid, lease = task_id_of(request), request.query_params.get("lease", "")
    await run_in_threadpool(farm.release, tid, lease)
    return JSONResponse({"ok": True})
