"""The long-running commands: `serve` and `node` (main.py registers them).

Their setting options are not written here: `with_settings` makes one option per setting
declared in blendfarm.settings, so a new setting needs one line there and nothing here.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import typer
from rich.table import Table

from ..errors import BadInput
from ..rest_hours import parse_schedule
from ..scheduler import parse_tags
from ..settings import NodeSettings, Setting, Settings, declared
from .context import console, err_console, friendly, target


def _option(item: Setting) -> inspect.Parameter:
    """The typer option of one declared setting; None when not given, so the environment,
    the config file and the default can still be told apart."""
    default = item.shown_default()
    brackets = f"env: {item.env}" + (f"; default: {default}" if default else "")
    option = typer.Option(
        None,
        *item.flags,
        metavar=item.metavar or None,
        show_default=False,
        help=f"{item.help}  [{brackets}]",
    )
    return inspect.Parameter(
        item.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=item.type | None
    )


def with_settings(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command one option per setting of `cls`; it gets them as `cli` (name: value)."""
    items = declared(cls)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(fn, eval_str=True).parameters.values()
            if p.name != "cli"
        ]
        params = own + [_option(item) for item in items]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            cli = {item.name: kwargs.pop(item.name) for item in items}
            return fn(cli=cli, **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _config_table(settings: Settings | NodeSettings) -> Table:
    table = Table(title="configuration in effect")
    for col in ("setting", "value", "from", "env"):
        table.add_column(col)
    for item in declared(type(settings)):
        shown = item.shown(getattr(settings, item.name))
        table.add_row(item.name, shown, settings.sources.get(item.name, "default"), item.env)
    return table


PRINT_CONFIG = typer.Option(
    False, "--print-config", help="Show the settings in effect and where each came from."
)


@friendly
@with_settings(Settings)
def serve(print_config: bool = PRINT_CONFIG, *, cli: dict[str, Any]) -> None:
    """Run the server: the API on :2254 and the dashboard on :8080.

    Ctrl-C stops both. Every setting can also come from its environment variable or from
    blendfarm.toml in the data dir (command line first, then the environment, the file, the
    default).
    """
    settings = Settings.build(cli)
    if print_config:
        console.print(_config_table(settings))
        return
    from ..server.run import serve as run_server

    run_server(settings)


@friendly
@with_settings(NodeSettings)
def node(
    ctx: typer.Context,
    burst: bool = typer.Option(False, "--burst", help="Exit when the queue is empty."),
    print_config: bool = PRINT_CONFIG,
    *,
    cli: dict[str, Any],
) -> None:
    """Run a render node: render chunks from the server with Blender.

    Every setting can also come from its environment variable or from blendfarm.toml in
    the work dir (command line first, then the environment, the file, the default).
    """
    from ..node.node import Node

    # `blendfarm --server URL node` counts as the command line too; BLENDFARM_SERVER is read
    # by NodeSettings itself, so --print-config can say where the value came from.
    before = target(ctx)
    if cli["server"] is None and before.from_command_line:
        cli["server"] = before.server
    settings = NodeSettings.build(cli)
    if print_config:
        console.print(_config_table(settings))
        return
    try:
        parse_tags(settings.tags)
        parse_schedule(settings.schedule)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    from ..node.stopping import StopRequest

    # First SIGTERM/SIGINT: stop soon (the chunk goes back); a second one: kill Blender now.
    stop = StopRequest()
    stop.install()
    worker = Node(settings, say=lambda msg: err_console.print(msg, highlight=False), stop=stop)
    worker.run(burst=burst)
