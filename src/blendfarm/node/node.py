"""`blendfarm node`: ask the server for work, render it with Blender, send it back.

The node never gives up on the server: every call goes through the one `ApiClient` with a
retry policy that waits out an absent server until the node is asked to stop. The pieces:
`heartbeat` (lease renewal and log lines, on its own thread), `projects` (the download
cache), `tasks` (one task to its end), `stopping` (signals and the guard that acts on them).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .. import __version__
from ..client import ApiClient, Retry, Stopped
from ..errors import BlendfarmError, InsufficientStorage, Unauthorized
from ..protocol import NodeInfo, Task, to_builtins
from ..scheduler import parse_tags
from ..settings import NodeSettings
from .blender import Renderer, SessionRenderer, blender_version, find_blender
from .blender_fetch import fetch_blender
from .heartbeat import Heartbeats, InFlight, LogBuffer
from .names import node_name
from .projects import ProjectCache
from .stopping import StopGuard, StopRequest, interruptible
from .tasks import TaskRunner

log = logging.getLogger("blendfarm.node")
IDLE_WAIT = (0.5, 5.0)
REFUSED_TOKEN = "the server refused this node's token (--token)"


class Node:
    """One render node. `run()` loops until stopped (or `max_chunks` / `burst` say so).

    `http` replaces the HTTP client (tests pass the in-process app's); `stop` is the request
    the signal handlers raise (`stopping.StopRequest.install`), else the node makes its own.
    """

    def __init__(
        self,
        settings: NodeSettings,
        http: httpx.Client | None = None,
        renderer: Renderer | None = None,
        say: Callable[[str], None] | None = None,
        stop: StopRequest | None = None,
    ):
        self.settings = settings
        self.work = settings.work_dir.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.name = node_name(self.work, settings.name)
        self.say = say or (lambda msg: log.info(msg))
        self.stop_event = threading.Event()
        self.stop_request = stop or StopRequest()
        self.client = ApiClient(
            settings.server,
            token=settings.token,
            http=http,
            retry=Retry(wait=self.stop_event.wait, say=self.say),
        )
        self._renderer = renderer
        self.blender_version = ""
        self.blender_sha = ""
        self.log = LogBuffer()
        self.in_flight = InFlight()
        self.heartbeats = Heartbeats(
            self.client,
            self.name,
            self.in_flight,
            self.log,
            self.stop_event,
            self._kill_blender,
            self.say,
            follow_blender=renderer is None and not settings.blender,
        )
        self.projects = ProjectCache(self.work, self.client, self.say, self.stop_event)
        self.tasks = TaskRunner(
            self.name,
            settings,
            self.work,
            self.client,
            self.projects,
            self.in_flight,
            lambda: self.renderer,
            self.stop_event,
            self.say,
        )
        self.chunks_done = 0

    # -- Blender ------------------------------------------------------------------------------

    @property
    def renderer(self) -> Renderer:
        """The renderer, started on first use with the Blender `_choose_blender` picks."""
        if self._renderer is None:
            self._renderer = self._start_renderer()
        return self._renderer

    def _start_renderer(self) -> Renderer:
        executable = self._choose_blender()
        self.blender_version = blender_version(executable)
        using = f"rendering with Blender {self.blender_version} ({executable})"
        self.say(using)
        self.log.add(f"blendfarm: {using}")
        return SessionRenderer(
            executable,
            self.log.add,
            self.settings.threads,
            self.settings.warm,
            self.settings.chunk_timeout,
            self.settings.trust_scripts,
        )

    def _choose_blender(self) -> str:
        """--blender when given; else the server's Blender; else `blender` on PATH; else wait."""
        wait = 5.0
        while True:
            if self.settings.blender:
                return find_blender(self.settings.blender)
            status = self.client.blender_status()
            if status.available and status.sha256:
                self._set_blender_sha(status.sha256)
                return str(self._fetch_blender(to_builtins(status)))
            self._set_blender_sha("")
            try:
                return find_blender("")
            except BlendfarmError:
                self.say(
                    "no Blender to render with: the server has none (blendfarm blender upload) "
                    "and there is no `blender` on PATH (--blender); waiting"
                )
                if self.stop_event.wait(wait):
                    raise Stopped() from None
                wait = min(wait * 2, 60.0)

    def _fetch_blender(self, info: dict[str, Any]) -> Path:
        """The server's Blender, downloaded on a helper thread a stop does not wait for."""
        return interruptible(
            lambda: fetch_blender(self.client, self.work, info, self.say),
            self.stop_event,
            "blender-download",
        )

    def _set_blender_sha(self, sha: str) -> None:
        self.blender_sha = sha
        self.heartbeats.blender_sha = sha

    def _switch_blender(self) -> None:
        """The server has a new Blender: drop the old one between chunks and register again."""
        self.heartbeats.new_blender.clear()
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = None
        self.say("the server has a new Blender: switching")
        self.register()

    def _kill_blender(self, polite: bool = False) -> None:
        """Stop Blender from any thread, at once (see Renderer.abort)."""
        renderer = self._renderer
        if renderer is not None:
            renderer.abort(polite)

    # -- the server ---------------------------------------------------------------------------

    def register(self) -> None:
        """Say hello to the server with the Blender this node renders with (chosen first)."""
        if self._renderer is None:  # choosing Blender is what makes its version known
            self._renderer = self._start_renderer()
        info = NodeInfo(
            blender_version=self.blender_version or "unknown",
            blender_sha256=self.blender_sha,
            hostname=socket.gethostname()[:100],
            cores=os.cpu_count() or 1,
            version=__version__,
            tags=sorted(parse_tags(self.settings.tags)),
            schedule=self.settings.schedule,
        )
        try:
            welcome = self.client.register(self.name, info)
        except Unauthorized:
            raise BlendfarmError(REFUSED_TOKEN) from None
        self.heartbeats.every = welcome.heartbeat
        self.projects.server_is(welcome.server_id)
        self.heartbeats.server_id = welcome.server_id
        self.say(
            f"node {self.name} registered with {self.client.server} "
            f"(Blender {self.blender_version})"
        )

    def _lease(self) -> Task | None:
        """The next task, or None when the queue has nothing for this node."""
        while True:
            try:
                return self.client.lease(self.name)
            except Unauthorized:
                raise BlendfarmError(REFUSED_TOKEN) from None
            except InsufficientStorage as exc:  # the server's disk is full: it may be freed
                self.say(f"the server cannot take work: {exc}; waiting")
            except BlendfarmError as exc:
                self.say(f"the server gave no task: {exc}; waiting")
            if self.stop_event.wait(IDLE_WAIT[1]):
                raise Stopped()

    # -- the loop -----------------------------------------------------------------------------

    def run(self, max_chunks: int | None = None, burst: bool = False) -> int:
        """Work until stopped; `max_chunks` tasks at most; `burst` stops when the queue is empty.

        Returns how many tasks this call handled.
        """
        handled = 0
        guard = StopGuard(self.stop_request, self._stopping, self._stopping_now, self._kill_blender)
        guard.start()
        self.projects.clean()
        try:
            self.register()
            self.heartbeats.start()
            idle = IDLE_WAIT[0]
            while not self.stop_event.is_set():
                if max_chunks is not None and handled >= max_chunks:
                    break
                if self.heartbeats.new_blender.is_set():
                    self._switch_blender()
                if self.heartbeats.server_changed.is_set():
                    self.heartbeats.server_changed.clear()
                    self.register()  # learns the new identity and drops stale projects
                task = self._lease()
                if task is None:
                    if burst:
                        break
                    self.stop_event.wait(idle * random.uniform(0.8, 1.2))
                    idle = min(idle * 1.5, IDLE_WAIT[1])
                    continue
                idle = IDLE_WAIT[0]
                self.run_task(task)
                handled += 1
                self.heartbeats.beat()
        except Stopped:
            pass
        finally:
            self.stop_event.set()
            if self._renderer is not None:
                self._renderer.close()
            guard.finish()
            self.heartbeats.join(timeout=1)
            self.client.leave(self.name)
        return handled

    def run_task(self, task: Task) -> None:
        """Do one leased task to its end (see `tasks`); Stopped when the node stops meanwhile."""
        if self.tasks.run(task):
            self.chunks_done += 1

    def _stopping(self) -> None:
        task = self.in_flight.task
        doing = f"handing task {task.id} back" if task else "no task in hand"
        self.say(f"stopping: {doing} (a second signal kills Blender at once)")
        self.stop_event.set()

    def _stopping_now(self) -> None:
        self.say("stopping now: killing Blender")
        self.stop_event.set()

    def stop(self) -> None:
        """Stop soon (a second call: now). Safe from any thread and from a signal handler."""
        self.stop_request.ask()
