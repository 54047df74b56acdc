"""Reading and guarding API requests: the farm, tokens, passwords, bodies."""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .. import protocol
from ..errors import BadInput, TooLarge
from ..protocol import OWNER_HEADER, PASSWORD_HEADER
from .auth import Credentials
from .services import Farm

log = logging.getLogger("blendfarm.server")
T = TypeVar("T")
MAX_CHUNK_UPLOAD = 4 * 1024**3
MAX_LOG_BODY = 16 * 1024**2  # log lines past the kept amount are truncated, not refused
EVENT_INTERVAL = 0.5
KEEPALIVE = 15.0


def farm_of(request: Request) -> Farm:
    farm: Farm = request.app.state.farm
    return farm


def node_auth(request: Request) -> Farm:
    farm = farm_of(request)
    farm.guard.check_token(request.headers.get("authorization"))
    return farm


async def admin_auth(request: Request) -> Farm:
    """The farm, once the admin password checks out (scrypt runs off the event loop)."""
    farm = farm_of(request)
    client = request.client.host if request.client else "?"
    given = request.headers.get(PASSWORD_HEADER)
    await run_in_threadpool(farm.guard.check_password, given, client)
    return farm


def credentials(request: Request) -> Credentials:
    """The owner key and admin password a request carries, and who sent it."""
    return Credentials(
        owner_key=request.headers.get(OWNER_HEADER),
        password=request.headers.get(PASSWORD_HEADER),
        client=request.client.host if request.client else "?",
    )


async def message_body(request: Request, kind: type[T], limit: int = 1024 * 1024) -> T:
    """The request's JSON body as a `protocol` message; BadInput with the reason when not."""
    body = await request.body()
    if len(body) > limit:
        raise TooLarge("the request body is too large")
    return protocol.decode(body, kind)


class MessageResponse(Response):
    """A `protocol` message (or list of them) as JSON."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return protocol.encode(content)


def project_id(request: Request) -> str:
    """The `{pid}` of a project route (the store answers NotFound for one it does not have)."""
    return str(request.path_params["pid"])


def task_id_of(request: Request) -> int:
    raw = request.path_params["task_id"]
    if not re.fullmatch(r"[0-9]{1,12}", str(raw)):
        raise BadInput("the task id must be a number")
    return int(raw)
