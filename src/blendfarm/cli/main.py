"""The `blendfarm` command: a thin typer layer over the library.

This module builds the app and registers the commands the *_commands modules define; they
import nothing from here. Client commands take `--server` before or after the command name
(see context.py); tests hand them an in-process server as `CliRunner().invoke(app, args,
obj=client)`, which answers for its own base URL and when no server is named.
"""

from __future__ import annotations

import httpx
import typer

from .. import __version__
from . import (
    addon_commands,
    admin_commands,
    client_commands,
    daemon_commands,
    demo_commands,
    queue_commands,
)
from .context import SERVER_ENV, Target, console, server_option
from .helptext import Command, Group

app = typer.Typer(
    name="blendfarm",
    cls=Group,
    help=(
        "A Blender render farm for your LAN. Run `blendfarm serve` on one machine, "
        "`blendfarm node` on every machine that should render, then submit projects "
        "from the shell or the dashboard on :8080."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


def version_callback(value: bool) -> None:
    if value:
        console.print(f"blendfarm {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    server: str | None = server_option(envvar=SERVER_ENV),
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Shared options of every command."""
    source = ctx.get_parameter_source("server")
    stand_in = ctx.obj if isinstance(ctx.obj, httpx.Client) else None
    from_command_line = source is not None and source.name == "COMMANDLINE"
    ctx.obj = Target(server or None, from_command_line, stand_in)


for command in (
    client_commands.submit,
    client_commands.status,
    client_commands.fetch,
    client_commands.rm,
    client_commands.retry,
    queue_commands.priority,
    queue_commands.pause,
    queue_commands.resume,
    queue_commands.cancel,
    queue_commands.requeue,
    admin_commands.purge,
    admin_commands.passwd,
    daemon_commands.serve,
    daemon_commands.node,
    demo_commands.demo,
):
    app.command(cls=Command)(command)

blender_app = typer.Typer(
    cls=Group,
    help="The Blender the server hands out to every node.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
blender_app.command("upload", cls=Command)(admin_commands.blender_upload)
blender_app.command("status", cls=Command)(admin_commands.blender_status)
app.add_typer(blender_app, name="blender")

addon_app = typer.Typer(
    cls=Group,
    help="The Blender add-on: submit from Render Properties › blendfarm.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
addon_app.command("install", cls=Command)(addon_commands.install)
addon_app.command("path", cls=Command)(addon_commands.path)
addon_app.command("submit", cls=Command, hidden=True)(addon_commands.submit)
app.add_typer(addon_app, name="addon")

nodes_app = typer.Typer(
    cls=Group,
    help="The render nodes: list them (no command), or disable and enable one.",
    invoke_without_command=True,
    rich_markup_mode=None,
)
nodes_app.callback()(queue_commands.nodes)
nodes_app.command("disable", cls=Command)(queue_commands.nodes_disable)
nodes_app.command("enable", cls=Command)(queue_commands.nodes_enable)
app.add_typer(nodes_app, name="nodes")


def main() -> None:
    """Entry point of the `blendfarm` script."""
    app()
