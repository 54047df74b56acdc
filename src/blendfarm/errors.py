"""Error types. Every error a person can cause is a `BlendfarmError` with an HTTP status.

The API turns them into one JSON shape (see `error_body`); the CLI prints their message on
one line and exits non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class BlendfarmError(Exception):
    """Base of every expected failure; `status` is the HTTP status the API answers with."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class BadInput(BlendfarmError):
    status = 400
    code = "bad_input"


class Unauthorized(BlendfarmError):
    status = 401
    code = "unauthorized"


class Forbidden(BlendfarmError):
    status = 403
    code = "forbidden"


class NotFound(BlendfarmError):
    status = 404
    code = "not_found"


class Conflict(BlendfarmError):
    status = 409
    code = "conflict"


class TooLarge(BlendfarmError):
    status = 413
    code = "too_large"


class TooManyRequests(BlendfarmError):
    status = 429
    code = "too_many_requests"


class InsufficientStorage(BlendfarmError):
    status = 507
    code = "insufficient_storage"


class BlenderFailed(BlendfarmError):
    """Blender exited with an error or produced no image; `log` holds its last lines."""

    status = 500
    code = "blender_failed"

    def __init__(self, message: str, log: list[str] | None = None):
        super().__init__(message)
        self.log = log or []


class Unreachable(BlendfarmError):
    """The server did not answer at all (not running, wrong address, network down)."""

    status = 503
    code = "unreachable"


_BY_STATUS: dict[int, type[BlendfarmError]] = {
    cls.status: cls
    for cls in (
        BadInput,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        TooLarge,
        TooManyRequests,
        InsufficientStorage,
    )
}


def from_status(status: int, code: str, message: str) -> BlendfarmError:
    """The error type of an API answer's status, for clients."""
    kind = _BY_STATUS.get(status)
    if kind is None:
        return BlendfarmError(message, status=status, code=code)
    return kind(message, code=code)


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """The one JSON shape of every API error."""
    return {"error": {"code": code, "message": message, "status": status}}


class BadChunks(ValueError):
    """Chunk files that are missing or cannot be decoded: not a person's error, so no HTTP
    status; compositing catches it and renders those chunks again."""

    def __init__(self, paths: list[Path], reason: str):
        super().__init__(f"{len(paths)} chunk file(s) {reason}: {', '.join(p.name for p in paths)}")
        self.paths = paths
        self.reason = reason

    def __reduce__(self) -> tuple[type[BadChunks], tuple[list[Path], str]]:
        return BadChunks, (self.paths, self.reason)  # raised in the stitching process
