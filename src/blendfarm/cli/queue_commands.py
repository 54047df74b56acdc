"""Commands that steer the queue: priority, pause, resume, cancel, requeue (owner key or
admin password), and `nodes` (list; disable and enable need the admin password).

main.py registers them (`nodes` as a group with `disable` and `enable`)."""

from __future__ import annotations

import typer

from .. import protocol as p
from ..client import status_json
from ..errors import BadInput
from ..owner_keys import recall
from ..parsing import parse_frames
from .admin_commands import PASSWORD_OPTION, admin_password
from .client_commands import OWNER_PASSWORD_OPTION
from .context import SERVER_OPTION, api_for, console, friendly
from .tables import nodes_table

ID_ARGUMENT = typer.Argument(..., metavar="ID", help="The project.")


@friendly
def priority(
    ctx: typer.Context,
    project_id: str = ID_ARGUMENT,
    value: int = typer.Argument(
        ..., metavar="N", min=0, max=100, help="0-100; higher gets free nodes first."
    ),
    password: str | None = OWNER_PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Change a project's priority (0-100, default 50).

    A higher priority gets free nodes first; projects of equal priority share the nodes.
    Needs the project's owner key (remembered by the shell that submitted it) or --password.
    """
    api = api_for(ctx, server)
    api.password = password or ""
    project = api.set_priority(project_id, value, recall(project_id))
    console.print(f"{project_id} has priority {project.priority}")


def _control(
    ctx: typer.Context, server: str | None, pid: str, password: str | None, act: str
) -> None:
    api = api_for(ctx, server)
    api.password = password or ""
    project = api.control(pid, act, recall(pid))
    console.print(f"{pid} is {project.state.value}")


@friendly
def pause(
    ctx: typer.Context,
    project_id: str = ID_ARGUMENT,
    password: str | None = OWNER_PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Hand out no more of a project's chunks; the ones rendering finish and count.

    Needs the project's owner key or --password. `blendfarm resume ID` lets it go on.
    """
    _control(ctx, server, project_id, password, "pause")


@friendly
def resume(
    ctx: typer.Context,
    project_id: str = ID_ARGUMENT,
    password: str | None = OWNER_PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Let a paused project go on. Needs the project's owner key or --password."""
    _control(ctx, server, project_id, password, "resume")


@friendly
def cancel(
    ctx: typer.Context,
    project_id: str = ID_ARGUMENT,
    password: str | None = OWNER_PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Stop a project on every node within one heartbeat, keeping what is done.

    The project is left `cancelled`; `blendfarm retry ID` revives it. Needs the project's
    owner key or --password.
    """
    _control(ctx, server, project_id, password, "cancel")


@friendly
def requeue(
    ctx: typer.Context,
    project_id: str = ID_ARGUMENT,
    frames: str = typer.Option(
        None, "--frames", metavar="A-B", help="Render frames A to B (both included) again."
    ),
    chunk: list[str] = typer.Option(
        None,
        "--chunk",
        metavar="CHUNK",
        help="Render this chunk, given as FRAME:ROW:COL (12:0:1), again; may be repeated.",
    ),
    password: str | None = OWNER_PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Render part of a project again, and re-stitch and re-encode what depends on it.

    The rest of the project is untouched. Needs the project's owner key or --password.
    """
    if bool(frames) == bool(chunk):
        raise BadInput("give --frames A-B or --chunk FRAME:ROW:COL")
    if frames:
        start, end = parse_frames(frames)
        frames = f"{start}-{end}"
    api = api_for(ctx, server)
    api.password = password or ""
    ask = p.RequeueRequest(frames=frames or "", chunks=list(chunk or []))
    answer = api.requeue(project_id, ask, recall(project_id))
    console.print(f"{answer.chunks} chunk(s) of {project_id} queued again")


@friendly
def nodes(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    server: str | None = SERVER_OPTION,
) -> None:
    """List the nodes: state, Blender, devices, tags, current chunk, chunks done, last seen."""
    if ctx.invoked_subcommand is not None:
        return
    api = api_for(ctx, server)
    found = api.nodes()
    if as_json:
        console.print_json(status_json(found))
        return
    console.print(nodes_table(found))


@friendly
def nodes_disable(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The node."),
    password: str = PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Let a node finish its chunk, then give it nothing until `nodes enable` (admin)."""
    _set_disabled(ctx, server, name, password, disabled=True)


@friendly
def nodes_enable(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="The node."),
    password: str = PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Let a disabled node take work again (admin)."""
    _set_disabled(ctx, server, name, password, disabled=False)


def _set_disabled(
    ctx: typer.Context, server: str | None, name: str, password: str, disabled: bool
) -> None:
    node = api_for(ctx, server).set_node_disabled(name, disabled, admin_password(password))
    console.print(f"node {node.name} is {'disabled' if disabled else 'enabled'}")
