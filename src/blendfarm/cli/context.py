"""What every command shares: the consoles, one-line errors, progress bars, and the server.

The server a client command talks to is, by precedence, `--server` after the command,
`--server` before it, BLENDFARM_SERVER, and http://127.0.0.1:2254. The group callback in
main.py leaves a `Target` on the context (the value before the command, and in tests an
in-process stand-in for the server); `api_for(ctx, server)` makes the `ApiClient` a command
uses (the same typed client the node uses: errors, headers and unreachable servers are
handled there once).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..client import DEFAULT_SERVER, ApiClient
from ..errors import BlendfarmError

SERVER_ENV = "BLENDFARM_SERVER"
F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err_console = Console(stderr=True)


def server_option(envvar: str | None = None) -> Any:
    """The `--server URL` option (before the command it also reads BLENDFARM_SERVER)."""
    return typer.Option(
        None,
        "--server",
        "-s",
        metavar="URL",
        envvar=envvar,
        show_default=False,
        help=f"URL of the server's API.  [env: {SERVER_ENV}; default: {DEFAULT_SERVER}]",
    )


SERVER_OPTION = server_option()  # after a client command


@dataclass(frozen=True)
class Target:
    """What the group callback knows about the server before a command runs."""

    server: str | None  # --server before the command, or BLENDFARM_SERVER
    from_command_line: bool  # that value was typed before the command
    stand_in: httpx.Client | None = None  # tests: an in-process server for its own base URL


def target(ctx: typer.Context) -> Target:
    found = ctx.find_object(Target)
    return found if found is not None else Target(None, False)


def api_for(ctx: typer.Context, server: str | None) -> ApiClient:
    """The client for a command given `--server` after it (None: not given)."""
    where = target(ctx)
    url = server or where.server
    stand_in = where.stand_in
    if stand_in is not None:
        own = str(stand_in.base_url).rstrip("/")
        if url is None or url.rstrip("/") == own:
            return ApiClient(own, http=stand_in)
    return ApiClient(url or DEFAULT_SERVER)


def uploading(name: str, total: int | None) -> tuple[Progress, Callable[[int], None]]:
    """A progress bar for a transfer and the function that advances it."""
    progress = transfer_progress()
    task = progress.add_task(name, total=total)
    return progress, lambda n: progress.advance(task, n)


def friendly(fn: F) -> F:
    """Turn expected failures into one line on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BlendfarmError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}", highlight=False, soft_wrap=True)
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


def transfer_progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
