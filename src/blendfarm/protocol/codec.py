"""Messages to and from JSON, and the JSON Schemas of every message (for OpenAPI)."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ..errors import BadInput
from . import messages as m

T = TypeVar("T")

# -- encoding -----------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


def encode(message: Any) -> bytes:
    """JSON bytes of a message (or a list of them)."""
    return _encoder.encode(message)


def decode(data: bytes | str, kind: type[T], what: str = "the request body") -> T:
    """A message of `kind` from JSON; BadInput with msgspec's one-line reason when it is not."""
    try:
        return msgspec.json.decode(data or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise BadInput(f"{what} is not valid: {exc}") from None
    except msgspec.DecodeError:
        raise BadInput(f"{what} is not valid JSON") from None


def convert(obj: Any, kind: type[T], what: str = "the message") -> T:
    """A message of `kind` from already-parsed JSON values (dicts, lists)."""
    try:
        return msgspec.convert(obj, type=kind)
    except msgspec.ValidationError as exc:
        raise BadInput(f"{what} is not valid: {exc}") from None


def to_builtins(message: Any) -> Any:
    """Plain dicts and lists of a message, as JSON would give them."""
    return msgspec.to_builtins(message)


SCHEMA_TYPES: tuple[type, ...] = (
    m.ErrorBody,
    m.Project,
    list[m.Project],
    m.SubmissionForm,
    m.Deleted,
    m.PriorityChange,
    m.RequeueRequest,
    m.Requeued,
    m.Node,
    list[m.Node],
    m.Status,
    m.Health,
    m.Lines,
    m.NodeInfo,
    m.Welcome,
    m.Heartbeat,
    m.HeartbeatAnswer,
    m.Task,
    m.Probe,
    m.Failure,
    m.FailureAnswer,
    m.Accepted,
    m.Ok,
    m.Purged,
    m.NewPassword,
    m.BlenderStatus,
)


def schemas(
    ref_template: str = "#/components/schemas/{name}",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(schema of each type in SCHEMA_TYPES by its name, the shared component schemas)."""
    found, components = msgspec.json.schema_components(SCHEMA_TYPES, ref_template=ref_template)
    named: dict[str, Any] = {}
    for kind, schema in zip(SCHEMA_TYPES, found, strict=True):
        name = schema_name(kind)
        if name not in components:  # a Struct's own entry is already there, under its name
            named[name] = schema
    return named, components


def schema_name(kind: Any) -> str:
    """'Project' for Project, 'ProjectList' for list[Project]."""
    args = getattr(kind, "__args__", None)
    if args:
        return f"{args[0].__name__}List"
    return str(kind.__name__)
