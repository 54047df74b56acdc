"""Routes for nodes (token): hello, heartbeat, leases, results, failures."""

from __future__ import annotations

import functools
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from .. import protocol as p
from ..errors import BadInput
from ..formats import CHUNK_KINDS, ChunkKind
from .bell import long_poll
from .chunk_images import SMALL_IMAGE_BYTES
from .dispatch import SMALL_RESULT_BYTES
from .openapi import api
from .requests import (
    MAX_CHUNK_UPLOAD,
    MAX_LOG_BODY,
    MessageResponse,
    message_body,
    node_auth,
    task_id_of,
)
from .services import Farm
from .uploads import receive_body, receive_small

MAX_WAIT = 60.0  # longest a lease request may wait for work
# A waiting lease looks again this often even without a ring (a rest hour may have ended);
# everything else that makes work rings the bell. Rare: 200 idle nodes looking every few
# seconds would cost the server more than everything else they do.
RECHECK = 30.0


def _node_name(request: Request) -> str:
    return _valid_node_name(str(request.path_params["name"]))


def _valid_node_name(name: str) -> str:
    if not (1 <= len(name) <= 64) or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise BadInput("a node name is 1-64 letters, digits, '-', '_' or '.'")
    return name


def chunk_kind_of(text: str) -> ChunkKind:
    """The `kind` of a chunk result: png (the default), exr or raw; BadInput otherwise."""
    for kind in CHUNK_KINDS:
        if text == kind:
            return kind
    raise BadInput(f"a chunk result is of kind {', '.join(CHUNK_KINDS)}, not {text[:40]!r}")


def _lease(request: Request) -> str:
    return request.query_params.get("lease", "")


@api("A node says hello (token).", request=p.NodeInfo, response=p.Welcome, auth="token")
async def node_register(request: Request) -> Response:
    farm = node_auth(request)
    name = _node_name(request)
    info = await message_body(request, p.NodeInfo)
    return MessageResponse(await run_in_threadpool(farm.dispatch.register, name, info))


@api(
    "A node is alive; renews its leases and sends log lines (token).",
    request=p.Heartbeat,
    response=p.HeartbeatAnswer,
    auth="token",
)
async def node_heartbeat(request: Request) -> Response:
    farm = node_auth(request)
    name = _node_name(request)
    beat = await message_body(request, p.Heartbeat, limit=MAX_LOG_BODY)
    return MessageResponse(farm.dispatch.heartbeat(name, beat))


@api(
    "A node asks for work for one of its slots (token; ?slot=gpu|cpu, default cpu); with "
    "`wait` (seconds, at most 60) the answer waits until work exists; 204 when there is none. "
    "`warm` is the content_sha of the project the slot's Blender has loaded: its projects are "
    "preferred where fair share allows.",
    response=p.Task,
    auth="token",
)
async def node_lease(request: Request) -> Response:
    farm = node_auth(request)
    name = _node_name(request)
    slot = "gpu" if request.query_params.get("slot") == "gpu" else "cpu"
    warm = _warm(request)
    task = await long_poll(
        farm.bell,
        lambda: farm.dispatch.lease(name, slot, warm),
        _wait_seconds(request),
        RECHECK,
        request.app.state.stopping,
        request.is_disconnected,
    )
    return Response(status_code=204) if task is None else MessageResponse(task)


def _warm(request: Request) -> str:
    warm = request.query_params.get("warm", "")
    if len(warm) > 64 or not all(ch in "0123456789abcdef" for ch in warm):
        raise BadInput("warm must be a content hash (up to 64 lowercase hex digits)")
    return warm


@api(
    "A node waits for tasks it must stop now (token; `wait` seconds, at most 60): answered at "
    "once when another node's copy of a task it renders finished first, else empty after "
    "`wait` or when the node leaves.",
    response=p.Stops,
    auth="token",
)
async def node_stops(request: Request) -> Response:
    farm = node_auth(request)
    name = _node_name(request)
    board = farm.store.tasks.stops

    def look() -> p.Stops | None:
        cancel, leaving = board.take(name)
        return p.Stops(cancel=cancel) if cancel or leaving else None

    stops = await long_poll(
        board.bell,
        look,
        _wait_seconds(request),
        RECHECK,
        request.app.state.stopping,
        request.is_disconnected,
    )
    return MessageResponse(stops or p.Stops(cancel=[]))


def _wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise BadInput("wait must be a number of seconds") from None
    if not 0 <= wait <= MAX_WAIT:
        raise BadInput(f"wait must be 0 to {MAX_WAIT:g} seconds")
    return wait


@api("A node leaves (token).", response=p.Ok, auth="token")
async def node_leave(request: Request) -> Response:
    farm = node_auth(request)
    return MessageResponse(await run_in_threadpool(farm.dispatch.leave, _node_name(request)))


@api(
    "A task's result (token, raw body): a chunk's image (PNG; OpenEXR with ?kind=exr, or"
    " ?kind=raw for a raw chunk whose frame a finish task completes), or with ?kind=final a"
    " finish task's frame. With ?next=cpu|gpu&node=N (and warm=, as for a lease) the answer's"
    " `next` is node N's next task for that slot, leased as a lease request would, or null.",
    response=p.Accepted,
    auth="token",
    body="application/octet-stream",
)
async def task_result(request: Request) -> Response:
    farm = node_auth(request)
    tid, lease = task_id_of(request), _lease(request)
    text = request.query_params.get("kind", "png")
    kind = None if text == "final" else chunk_kind_of(text)  # refused before the body is read
    follow = _follow_up(request)  # the node's next task with the answer: no lease of its own
    result = await _take_result(request, farm, tid, lease, kind)
    return MessageResponse(await farm.dispatch.results.submit((result, follow)))


async def _take_result(
    request: Request, farm: Farm, tid: int, lease: str, kind: ChunkKind | None
) -> p.Accepted | Callable[[], p.Accepted]:
    """The answer already, or the commit that records the result (`Dispatch.settle` runs it,
    with the node's next lease, in the loop's shared transaction)."""
    dispatch = farm.dispatch
    task = dispatch.check_lease(tid, lease)  # on the loop: one indexed read
    small = None if kind is None else dispatch.small_result(task, kind, _declared_length(request))
    if small is not None:
        # A small PNG chunk (what nodes send most) is checked in memory on the loop. The
        # smallest are kept in the database; the flusher thread writes the others and flushes
        # them with every result arriving meanwhile.
        data = await receive_small(request, SMALL_RESULT_BYTES)
        held = dispatch.chunk_in_memory(tid, lease, small, data)
        if isinstance(held, p.Accepted):
            return held
        if len(data) <= SMALL_IMAGE_BYTES:  # kept in the database, in the commit itself
            return functools.partial(dispatch.commit_image, held, data, task)
        await dispatch.durable_async.place(held.path, data, dispatch.other_kinds(held.path, task))
        return functools.partial(dispatch.commit_chunk, held)
    # The reserve keeps room for renders: results themselves may use it (a full disk is a 507).
    tmp = await receive_body(request, farm.data, MAX_CHUNK_UPLOAD, reserve=0)
    if kind is None:
        return await run_in_threadpool(farm.compositor.finishing.result, task, tmp)
    stored = await run_in_threadpool(dispatch.store_chunk, tid, lease, tmp, kind)
    if isinstance(stored, p.Accepted):
        return stored
    await dispatch.durable_async.sync(stored.path)
    return functools.partial(dispatch.commit_chunk, stored)


def _follow_up(request: Request) -> tuple[str, str, str] | None:
    """What a result's `next` asks: (node, slot, warm) to lease the node's next task with."""
    slot = request.query_params.get("next")
    if slot is None:
        return None
    if slot not in ("cpu", "gpu"):
        raise BadInput("next must be cpu or gpu (the slot the next task is for)")
    return _valid_node_name(request.query_params.get("node", "")), slot, _warm(request)


def _declared_length(request: Request) -> int | None:
    length = request.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


@api(
    "The stitched raw passes of a finish task's frame (token; ?lease= the task's lease).",
    auth="token",
    media="image/x-exr",
)
async def task_passes(request: Request) -> Response:
    farm = node_auth(request)
    tid, lease = task_id_of(request), _lease(request)
    task = await run_in_threadpool(farm.dispatch.check_lease, tid, lease)
    path = await run_in_threadpool(farm.compositor.finishing.passes, task)
    return FileResponse(path, media_type="image/x-exr")


@api("What a probe found in the scene (token).", request=p.Probe, response=p.Accepted, auth="token")
async def task_probe(request: Request) -> Response:
    farm = node_auth(request)
    probe = await message_body(request, p.Probe)
    tid, lease = task_id_of(request), _lease(request)
    return MessageResponse(await run_in_threadpool(farm.dispatch.probe_result, tid, lease, probe))


@api(
    "A task failed on a node (token).",
    request=p.Failure,
    response=p.FailureAnswer,
    auth="token",
)
async def task_fail(request: Request) -> Response:
    farm = node_auth(request)
    failure = await message_body(request, p.Failure, limit=MAX_LOG_BODY)
    tid, lease = task_id_of(request), _lease(request)
    return MessageResponse(await run_in_threadpool(farm.dispatch.task_failed, tid, lease, failure))


@api("A node hands a task back unfinished (token).", response=p.Ok, auth="token")
async def task_release(request: Request) -> Response:
    farm = node_auth(request)
    tid, lease = task_id_of(request), _lease(request)
    return MessageResponse(await run_in_threadpool(farm.dispatch.release, tid, lease))
