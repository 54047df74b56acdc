"""`blendfarm serve`: the API and the dashboard, two uvicorn servers in one process.

uvicorn's own signal handlers are per server and hang on Ctrl-C when two run together, so
this module owns SIGINT/SIGTERM and asks both servers (and any local nodes) to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from rich.console import Console

from ..settings import Settings
from .app import create_app, create_ui_app

log = logging.getLogger("blendfarm.server")
KEEP_ALIVE = 75  # seconds an idle connection stays open
# How long a thread holding the GIL may keep the event loop waiting for it (Python's default is
# 5 ms): the loop answers leases and results, the compositor and status threads wait their turn.
SWITCH_INTERVAL = 0.001


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (a few times less CPU per request)."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _check_port(host: str, port: int) -> None:
    from ..errors import BlendfarmError

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise BlendfarmError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _local_node(settings: Settings, token: str, index: int) -> subprocess.Popen[bytes]:
    host = "127.0.0.1" if settings.host in {"0.0.0.0", "::", ""} else settings.host
    work = settings.data / "local-nodes" / str(index)
    work.mkdir(parents=True, exist_ok=True)
    server = f"http://{host}:{settings.api_port}"
    cmd = [sys.executable, "-m", "blendfarm", "--server", server, "node", "--work-dir", str(work)]
    env = dict(os.environ, BLENDFARM_TOKEN=token)
    return subprocess.Popen(cmd, env=env)


def serve(settings: Settings, console: Console | None = None) -> None:
    """Run the farm's server until SIGINT or SIGTERM."""
    console = console or Console(stderr=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    _check_port(settings.host, settings.api_port)
    _check_port(settings.host, settings.ui_port)
    app = create_app(settings)
    sys.setswitchinterval(SWITCH_INTERVAL)
    # Multipart uploads are spooled to the temp dir past 1 MiB: keep them on the data disk
    # (checked against the reserve, cleaned at start) rather than in a small /tmp.
    tempfile.tempdir = str(app.state.farm.data.root / "tmp")
    farm = app.state.farm
    created = farm.guard.secrets.created
    if created:
        console.print("[bold]First start: these secrets are shown once.[/bold]")
        if "token" in created:
            console.print(
                f"  node token:     [cyan]{created['token']}[/cyan]  (blendfarm node --token)"
            )
        if "password" in created:
            console.print(
                f"  admin password: [cyan]{created['password']}[/cyan]"
                "  (blendfarm passwd changes it)"
            )
        console.print(f"  stored in {Path(settings.data).resolve() / 'secrets.json'} (mode 0600)")
    api = _Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.api_port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=5,
            http="auto",  # httptools (a dependency) where it loads
            access_log=False,  # no line per request
            # Nodes keep their connection between heartbeats (every node_timeout / 3) and long
            # polls (25 s): reconnecting 200 nodes every few seconds costs an idle server.
            timeout_keep_alive=KEEP_ALIVE,
            # X-Forwarded-For is believed only from proxies the admin names (never by default:
            # uvicorn would trust 127.0.0.1, so a local guesser could pick any address).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
        )
    )
    ui = _Server(
        uvicorn.Config(
            create_ui_app(settings),
            host=settings.host,
            port=settings.ui_port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
            access_log=False,
        )
    )
    shown = "127.0.0.1" if settings.host in {"0.0.0.0", "::"} else settings.host
    console.print(
        f"blendfarm API on http://{shown}:{settings.api_port}, "
        f"dashboard on http://{shown}:{settings.ui_port}, data in {app.state.farm.data.root}"
    )
    nodes: list[subprocess.Popen[bytes]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def stop() -> None:
            api.should_exit = True
            ui.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        tasks = [asyncio.create_task(api.serve()), asyncio.create_task(ui.serve())]
        while not (api.started and ui.started):
            if any(t.done() for t in tasks):
                stop()
                break
            await asyncio.sleep(0.05)
        else:
            for i in range(settings.local_nodes):
                nodes.append(_local_node(settings, farm.guard.secrets.token, i))
        await asyncio.gather(*tasks)

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    finally:
        for proc in nodes:
            proc.send_signal(signal.SIGTERM)
        for proc in nodes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        farm.close()
    console.print("blendfarm server stopped")
