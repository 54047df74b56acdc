"""What every command shares: the consoles, one-line errors, progress bars, and the server.

The server a client command talks to is, by precedence, `--server` after the command,
`--server` before it, BLENDFARM_SERVER, and http://127.0.0.1:2254. The group callback in
main.py leaves a `Target` on the context (the value before the command, and in tests an
in-process stand-in for the server); `api_for(ctx, server)` makes the `Api` a command uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

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

from ..errors import BlendfarmError, Conflict, NotFound

DEFAULT_SERVER = "http://127.0.0.1:2254"
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


def target(ctx: typer.Context) -> Target:
    found = ctx.find_object(Target)
    return found if found is not None else Target(None, False)


def api_for(ctx: typer.Context, server: str | None) -> Api:
    """The server for a client command given `--server` after it (None: not given)."""
    where = target(ctx)
    url = server or where.server
    stand_in = where.stand_in
    if stand_in is not None:
        own = str(stand_in.base_url).rstrip("/")
        if url is None or url.rstrip("/") == own:
            return Api(own, stand_in)
    return Api(url or DEFAULT_SERVER)


def api_error(resp: httpx.Response) -> BlendfarmError:
    """The server's JSON error as an exception (one line for the person)."""
    try:
        body = resp.json()["error"]
        message, status = str(body["message"]), int(body["status"])
    except (ValueError, KeyError, TypeError):
        message, status = f"the server answered HTTP {resp.status_code}", resp.status_code
    kind = {404: NotFound, 409: Conflict}.get(status, BlendfarmError)
    return kind(message, status=status) if kind is BlendfarmError else kind(message)


def checked(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        resp.read()
        raise api_error(resp)
    return resp


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


class ProgressReader:
    """A file wrapper that advances a progress bar as httpx reads it."""

    def __init__(self, fh: BinaryIO, progress: Progress, task: Any):
        self.fh, self.progress, self.task = fh, progress, task

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.progress.advance(self.task, len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(1024 * 1024):
            yield block

    def fileno(self) -> int:
        return self.fh.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()
