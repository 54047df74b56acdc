"""Farm-wide commands: purge, passwd, and the Blender the server hands out.

main.py registers them (the last two as `blendfarm blender upload|status`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..client import status_json
from ..errors import BadInput
from .context import SERVER_OPTION, api_for, console, friendly, uploading

PASSWORD_OPTION = typer.Option(
    None,
    "--password",
    envvar="BLENDFARM_PASSWORD",
    metavar="PASSWORD",
    help="The admin password (asked for when missing).  [env: BLENDFARM_PASSWORD]",
)


def admin_password(given: str | None) -> str:
    return given or typer.prompt("Admin password", hide_input=True)


@friendly
def purge(
    ctx: typer.Context,
    password: str = PASSWORD_OPTION,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
    server: str | None = SERVER_OPTION,
) -> None:
    """Delete EVERYTHING on the server: all projects, renders and nodes."""
    api = api_for(ctx, server)
    if not yes and not typer.confirm(
        "Purge the database? Every project, render and all progress is deleted.", default=False
    ):
        raise typer.Exit(1)
    secret = admin_password(password)
    api.purge(secret)
    console.print("the server's database was purged")


@friendly
def passwd(
    ctx: typer.Context,
    password: str = PASSWORD_OPTION,
    new_password: str = typer.Option(
        None,
        "--new-password",
        metavar="PASSWORD",
        help="The new password (asked for twice when missing).",
    ),
    server: str | None = SERVER_OPTION,
) -> None:
    """Change the admin password."""
    api = api_for(ctx, server)
    secret = admin_password(password)
    new = new_password or typer.prompt(
        "New admin password", hide_input=True, confirmation_prompt=True
    )
    api.change_password(new, secret)
    console.print("the admin password was changed")


@friendly
def blender_upload(
    ctx: typer.Context,
    tarball: Path = typer.Argument(
        ..., metavar="FILE", help="An official blender-VERSION-linux-ARCH.tar.xz."
    ),
    password: str = PASSWORD_OPTION,
    server: str | None = SERVER_OPTION,
) -> None:
    """Send a Blender build to the server for every node to render with.

    Every node switches to it between two chunks, never in the middle of one.
    """
    api = api_for(ctx, server)
    if not tarball.is_file():
        raise BadInput(f"{tarball} does not exist")
    secret = admin_password(password)
    progress, advance = uploading(f"uploading {tarball.name}", tarball.stat().st_size)
    with progress:
        info = api.upload_blender(tarball, secret, advance)
    console.print(f"the farm now renders with {info.filename} (sha256 {(info.sha256 or '')[:12]}…)")


@friendly
def blender_status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str | None = SERVER_OPTION,
) -> None:
    """Show the server's Blender and which Blender every node runs."""
    api = api_for(ctx, server)
    info = api.blender_status()
    if as_json:
        console.print_json(status_json(info))
        return
    if info.available:
        console.print(
            f"server: {info.filename}, {(info.size or 0) // 2**20} MiB, "
            f"sha256 {(info.sha256 or '')[:12]}…, uploaded {info.uploaded}"
        )
    else:
        console.print("server: no Blender uploaded (nodes use `blender` on their PATH)")
    table = Table()
    for col in ("node", "online", "Blender", "the server's"):
        table.add_column(col)
    for name, node in sorted(info.nodes.items()):
        same = info.available and node.sha256 == info.sha256
        table.add_row(
            name, "yes" if node.online else "no", str(node.version), "yes" if same else "no"
        )
    console.print(table)
