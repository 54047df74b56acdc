"""The `blendfarm` command: a thin typer layer over the library.

Client commands share `--server` through one callback and talk to the API through an
`httpx.Client` kept on the context, so tests can hand them an in-process one
(`CliRunner().invoke(app, args, obj=client)`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console

from .. import __version__
from ..errors import BlendfarmError

DEFAULT_SERVER = "http://127.0.0.1:2254"
F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="blendfarm",
    help=(
        "A Blender render farm for your LAN. Run `blendfarm serve` on one machine, "
        "`blendfarm node` on every machine that should render, then submit projects "
        "from the shell or the dashboard on :8080."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)


class Api:
    """The client side of the API for the CLI: a server URL and a lazily made httpx client."""

    def __init__(self, server: str, client: httpx.Client | None = None):
        self.server = server.rstrip("/")
        self._client = client

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.server, timeout=httpx.Timeout(60, connect=5))
        return self._client


def version_callback(value: bool) -> None:
    if value:
        console.print(f"blendfarm {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    server: str = typer.Option(
        None,
        "--server",
        "-s",
        envvar="BLENDFARM_SERVER",
        show_default=DEFAULT_SERVER,
        help="URL of the server's API (also BLENDFARM_SERVER).",
    ),
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Show the version."
    ),
) -> None:
    """Shared options of every command."""
    given = ctx.obj
    if isinstance(given, httpx.Client):
        ctx.obj = Api(str(given.base_url), given)
    elif not isinstance(given, Api):
        ctx.obj = Api(server or DEFAULT_SERVER)


def friendly(fn: F) -> F:
    """Turn expected failures into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BlendfarmError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except httpx.TransportError as exc:
            err_console.print(
                f"[red]error:[/red] cannot reach the server: {exc} "
                "(is `blendfarm serve` running? --server / BLENDFARM_SERVER)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None
        except OSError as exc:  # a file the person named cannot be read or written
            where = f" ({exc.filename})" if exc.filename else ""
            err_console.print(
                f"[red]error:[/red] {exc.strerror or exc}{where}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def main() -> None:
    """Entry point of the `blendfarm` script."""
    app()


# Importing the command modules registers their commands on `app`.
from . import admin_commands, client_commands, daemon_commands  # noqa: E402,F401
