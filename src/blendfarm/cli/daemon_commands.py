"""The long-running commands: `serve` and `node`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.table import Table

from ..settings import NODE_KNOBS, SERVER_KNOBS, Knob, NodeSettings, Settings
from .main import app, console, err_console, friendly


def _config_table(
    knobs: tuple[Knob, ...], values: dict[str, object], sources: dict[str, str]
) -> Table:
    table = Table(title="configuration in effect")
    for col in ("setting", "value", "from", "env"):
        table.add_column(col)
    for knob in knobs:
        value = values[knob.name]
        shown = "****" if knob.name in {"token", "password"} and value else str(value)
        table.add_row(knob.name, shown, sources.get(knob.name, "default"), knob.env)
    return table


@app.command()
@friendly
def serve(
    host: str = typer.Option(None, help="Address to listen on.  [default: 0.0.0.0]"),
    api_port: int = typer.Option(None, "--api-port", help="Port of the JSON API.  [default: 2254]"),
    ui_port: int = typer.Option(None, "--ui-port", help="Port of the dashboard.  [default: 8080]"),
    data: Path = typer.Option(None, "--data", help="Data dir.  [default: ./blendfarm-data]"),
    node_timeout: float = typer.Option(
        None,
        "--node-timeout",
        help="Seconds without heartbeat before a node is offline.  [default: 60]",
    ),
    local_nodes: int = typer.Option(
        None, "--local-nodes", help="Also run N nodes on this machine.  [default: 0]"
    ),
    chunk_timeout: float = typer.Option(
        None, "--chunk-timeout", help="Seconds one chunk may render.  [default: 3600]"
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Show the settings in effect and where each came from."
    ),
) -> None:
    """Run the server: the API on :2254 and the dashboard on :8080 (Ctrl-C stops both)."""
    cli = {
        "host": host,
        "api_port": api_port,
        "ui_port": ui_port,
        "data": str(data) if data else None,
        "node_timeout": node_timeout,
        "local_nodes": local_nodes,
        "chunk_timeout": chunk_timeout,
    }
    settings = Settings.build(cli)
    if print_config:
        values = {k.name: getattr(settings, k.name) for k in SERVER_KNOBS}
        console.print(_config_table(SERVER_KNOBS, values, settings.sources))
        return
    from ..server.run import serve as run_server

    run_server(settings)


@app.command()
@friendly
def node(
    ctx: typer.Context,
    name: str = typer.Option(None, "--name", help="Name of this node (kept in the work dir)."),
    work_dir: Path = typer.Option(
        None, "--work-dir", help="Work dir.  [default: ./blendfarm-work]"
    ),
    blender: str = typer.Option(
        None, "--blender", help="Blender executable.  [default: blender on PATH]"
    ),
    threads: int = typer.Option(None, "--threads", help="Render threads (0: all cores)."),
    token: str = typer.Option(
        None, "--token", help="Node token printed by the server (also BLENDFARM_TOKEN)."
    ),
    cold: bool = typer.Option(
        False, "--cold", help="Start Blender for every chunk instead of keeping it warm."
    ),
    burst: bool = typer.Option(False, "--burst", help="Exit when the queue is empty."),
    print_config: bool = typer.Option(False, "--print-config", help="Show the settings in effect."),
) -> None:
    """Run a render node: take chunks from the server and render them with Blender."""
    from ..node.node import Node

    server = ctx.obj.server if ctx.obj is not None else None
    # Only a --server typed on the command line counts as such; BLENDFARM_SERVER is read by
    # NodeSettings itself, so --print-config can say where the value came from.
    source = ctx.parent.get_parameter_source("server") if ctx.parent is not None else None
    server_given = source is not None and source.name == "COMMANDLINE"
    cli = {
        "server": server if server_given else None,
        "name": name,
        "work_dir": str(work_dir) if work_dir else None,
        "blender": blender,
        "threads": threads,
        "token": token,
        "warm": False if cold else None,
    }
    settings = NodeSettings.build(cli)
    if print_config:
        values = {k.name: getattr(settings, k.name) for k in NODE_KNOBS}
        console.print(_config_table(NODE_KNOBS, values, settings.sources))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    from ..node.stopping import StopRequest

    # First SIGTERM/SIGINT: stop soon (the chunk goes back); a second one: kill Blender now.
    stop = StopRequest()
    stop.install()
    worker = Node(settings, say=lambda msg: err_console.print(msg, highlight=False), stop=stop)
    worker.run(burst=burst)
