"""`blendfarm node`: ask the server for work, render it with Blender, send it back.

A node has one slot per device it renders on (`devices.plan_slots`: a GPU each, or the CPU);
each slot leases, renders and delivers one task at a time, on its own thread when there are
several.

The node never gives up on the server: every call goes through the one `ApiClient` with a
retry policy that waits out an absent server until the node is asked to stop. The pieces:
`heartbeat` (lease renewal and log lines, on its own thread), `stop_listener` (tasks the
server takes away, at once), `projects` (the download cache), `tasks` (one task to its end),
`stopping` (signals and the guard that acts on them).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from .. import __version__
from ..client import ApiClient, Retry, Stopped
from ..errors import BlendfarmError, InsufficientStorage, Unauthorized
from ..protocol import BlenderStatus, NodeInfo, Task
from ..scheduler import parse_tags
from ..settings import NodeSettings
from .blender import (
    BPY,
    Renderer,
    SessionRenderer,
    blender_version,
    bpy_version,
    find_blender,
    list_devices,
)
from .blender_fetch import fetch_blender
from .devices import Device, Plan, Slot, check_device, parse_gpus, plan_slots, reported_devices
from .heartbeat import Heartbeats, InFlight, LogBuffer
from .names import node_name
from .projects import ProjectCache
from .slots import SlotWorker
from .stop_listener import StopListener
from .stopping import StopGuard, StopRequest, interruptible
from .tasks import TaskRunner

log = logging.getLogger("blendfarm.node")
IDLE_WAIT = (0.5, 5.0)
LONG_POLL = 25.0  # seconds the server may hold a request for work until work exists
REFUSED_TOKEN = "the server refused this node's token (--token)"


class Node:
    """One render node. `run()` loops until stopped (or `max_chunks` / `burst` say so).

    `http` replaces the HTTP client (tests pass the in-process app's); `stop` is the request
    the signal handlers raise (`stopping.StopRequest.install`), else the node makes its own.
    `renderer` (one for every slot) or `renderers` (one per slot) replace Blender in tests.
    """

    def __init__(
        self,
        settings: NodeSettings,
        http: httpx.Client | None = None,
        renderer: Renderer | None = None,
        say: Callable[[str], None] | None = None,
        stop: StopRequest | None = None,
        renderers: Callable[[Slot], Renderer] | None = None,
    ):
        check_device(settings.device)  # a bad --device or --gpus is refused before anything
        parse_gpus(settings.gpus)
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
        given = renderers or ((lambda _slot: renderer) if renderer is not None else None)
        self._given: Callable[[Slot], Renderer] | None = given
        self.executable = ""
        self.blender_version = ""
        self.blender_sha = ""
        self.devices: list[Device] = []
        self.plan: Plan | None = None
        self.log = LogBuffer()
        self.projects = ProjectCache(self.work, self.client, self.say, self.stop_event)
        self.workers = [self._worker(Slot(0, None))]
        self.heartbeats = Heartbeats(
            self.client,
            self.name,
            [self.workers[0].in_flight],
            self.log,
            self.stop_event,
            self._kill_slot,
            self.say,
            follow_blender=given is None and not settings.blender,
        )
        self.stops = StopListener(
            self.client,
            self.name,
            self.heartbeats.in_flight,
            self._kill_slot,
            self.stop_event,
            self.say,
        )
        self.chunks_done = 0
        self._gate = threading.Condition()  # guards the counts below and Blender switches
        self._claimed = 0  # tasks asked for or in hand (max_chunks counts them)
        self._handled = 0
        self._busy = 0  # slots between lease and result
        self._errors: list[BaseException] = []
        self._counted = False  # a run with max_chunks or burst: tasks are only leased

    @property
    def in_flight(self) -> InFlight:
        """The task in hand of the first slot (the only one of a one-slot node)."""
        return self.workers[0].in_flight

    # -- Blender and devices ------------------------------------------------------------------

    def _worker(self, slot: Slot) -> SlotWorker:
        def runner(worker: SlotWorker) -> TaskRunner:
            return TaskRunner(
                self.name,
                self.settings,
                self.work,
                self.client,
                self.projects,
                worker.in_flight,
                worker.renderer,
                self.stop_event,
                self.say,
                device=slot.label,
                gpu=slot.device is not None,
                goes_on=self._goes_on,
            )

        return SlotWorker(slot, self._make_renderer, runner)

    def _goes_on(self) -> bool:
        """Whether a result may bring its slot's next task: not counted, stopping or pausing."""
        return not (self._counted or self.stop_event.is_set() or self._pause_needed())

    def _make_renderer(self, slot: Slot) -> Renderer:
        if self._given is not None:
            return self._given(slot)
        if not self.executable:
            self._choose()
        many = self.plan is not None and len(self.plan.slots) > 1
        sink = (lambda line: self.log.add(f"[{slot.label}] {line}")) if many else self.log.add
        return SessionRenderer(
            self.executable,
            sink,
            self.settings.threads,
            self.settings.warm,
            self.settings.chunk_timeout,
            self.settings.trust_scripts,
            device=slot.device,
        )

    def _choose(self) -> None:
        """Choose the Blender to render with and learn its version (said at start)."""
        self.executable = self._choose_blender()
        self.blender_version = blender_version(self.executable)
        version = self.blender_version.removesuffix(" (bpy)")
        bpy = f"the bpy module, in a child of {sys.executable}"
        where = bpy if self.executable == BPY else self.executable
        using = f"rendering with Blender {version} ({where})"
        self.say(using)
        self.log.add(f"blendfarm: {using}")

    def _plan(self) -> None:
        """Learn the devices and make the slots (once); BlendfarmError when a backend named
        by --device is absent."""
        if self.settings.device.strip().lower() == "cpu":
            self.devices = []
        elif self._given is not None:
            self.devices = reported_devices(os.environ, lambda: [])
        else:
            self.devices = reported_devices(os.environ, lambda: list_devices(self.executable))
        plan = plan_slots(
            self.devices, self.settings.device, self.settings.gpus, self.settings.cpu_slot
        )
        self.plan = plan
        self.workers = [self._worker(slot) for slot in plan.slots]
        self.heartbeats.in_flight[:] = [w.in_flight for w in self.workers]
        summary = plan.summary(self.settings.device)
        self.say(summary)
        self.log.add(f"blendfarm: {summary}")

    def _choose_blender(self) -> str:
        """--blender when given; else the server's Blender; else `blender` on PATH; else the
        bpy module when this Python has it; else wait."""
        wait = 5.0
        while True:
            if self.settings.blender:
                return find_blender(self.settings.blender)
            status = self.client.blender_status()
            if status.available and status.sha256:
                self._set_blender_sha(status.sha256)
                return str(self._fetch_blender(status))
            self._set_blender_sha("")
            try:
                return find_blender("")
            except BlendfarmError:
                pass
            if bpy_version():
                return BPY
            self.say(
                "no Blender to render with: the server has none (blendfarm blender upload), "
                "there is no `blender` on PATH (--blender) and no bpy module "
                "(pip install 'blendfarm[blender]'); waiting"
            )
            if self.stop_event.wait(wait):
                raise Stopped() from None
            wait = min(wait * 2, 60.0)

    def _fetch_blender(self, info: BlenderStatus) -> Path:
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
        """The server has a new Blender: drop the old one between chunks and register again
        (every slot is idle: see `_work`)."""
        self.heartbeats.new_blender.clear()
        for worker in self.workers:
            worker.reset()
        self.executable = ""
        self.say("the server has a new Blender: switching")
        self.register()

    def _kill_blender(self, polite: bool = False) -> None:
        """Stop every slot's Blender from any thread, at once (see Renderer.abort)."""
        for worker in list(self.workers):
            worker.abort(polite)

    def _kill_slot(self, in_flight: InFlight) -> None:
        """Stop the Blender of the slot whose task is `in_flight` (its lease is gone)."""
        for worker in list(self.workers):
            if worker.in_flight is in_flight:
                worker.abort()

    # -- the server ---------------------------------------------------------------------------

    def register(self) -> None:
        """Say hello to the server with the Blender and devices this node renders with (chosen
        first)."""
        if self._given is None and not self.executable:
            self._choose()  # choosing Blender is what makes its version known
        if self.plan is None:
            self._plan()
        assert self.plan is not None
        info = NodeInfo(
            blender_version=self.blender_version or "unknown",
            blender_sha256=self.blender_sha,
            hostname=socket.gethostname()[:100],
            cores=os.cpu_count() or 1,
            version=__version__,
            devices=[d.label[:100] for d in self.devices][:64],
            slots=[slot.label[:100] for slot in self.plan.slots][:64],
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

    def _lease(self, slot: Slot | None = None, wait: float = 0.0, warm: str = "") -> Task | None:
        """The next task for `slot` (the first one), or None when the queue has nothing for it;
        with `wait`, the server answers as soon as work exists, within that many seconds;
        `warm` is the content the slot's Blender has loaded (the server prefers it)."""
        kind = "cpu" if (slot or self.workers[0].slot).device is None else "gpu"
        while True:
            try:
                if not wait:
                    return self.client.lease(self.name, kind, warm=warm)
                return interruptible(
                    lambda: self.client.lease(self.name, kind, wait, warm),
                    self.stop_event,
                    "lease",
                )
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
        with self._gate:
            self._claimed = self._handled = 0
        self._counted = max_chunks is not None or burst
        guard = StopGuard(self.stop_request, self._stopping, self._stopping_now, self._kill_blender)
        guard.start()
        self.projects.clean()
        try:
            self.register()
            self.heartbeats.start()
            if not burst:  # told at once when another node finished a task first
                self.stops.start()
            if len(self.workers) == 1:
                self._work(self.workers[0], max_chunks, burst)
            else:
                self._run_slots(max_chunks, burst)
        except Stopped:
            pass
        finally:
            self.stop_event.set()
            for worker in self.workers:
                worker.reset()
            guard.finish()
            self.heartbeats.join(timeout=1)
            self.client.leave(self.name)
        return self._handled

    def _run_slots(self, max_chunks: int | None, burst: bool) -> None:
        """Every slot on its own thread; the first error any of them meets ends them all."""

        def work(worker: SlotWorker) -> None:
            try:
                self._work(worker, max_chunks, burst)
            except Stopped:
                pass
            except BaseException as exc:
                self._errors.append(exc)
                self.stop_event.set()
                self._kill_blender()

        threads = [
            threading.Thread(target=work, args=(w,), name=f"slot-{w.slot.number}", daemon=True)
            for w in self.workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # short waits: the main thread keeps taking signals
        if self._errors:
            raise self._errors[0]

    def _pause_needed(self) -> bool:
        return self.heartbeats.new_blender.is_set() or self.heartbeats.server_changed.is_set()

    def _work(self, worker: SlotWorker, max_chunks: int | None, burst: bool) -> None:
        """One slot's loop: lease, render, deliver, until stopped or done."""
        idle = IDLE_WAIT[0]
        while not self.stop_event.is_set():
            with self._gate:
                if max_chunks is not None and self._claimed >= max_chunks:
                    return
                # A new Blender or server is taken between tasks, once every slot is idle.
                while self._pause_needed() and self._busy > 0 and not self.stop_event.is_set():
                    self._gate.wait(0.5)
                if self.stop_event.is_set():
                    return
                if self.heartbeats.new_blender.is_set():
                    self._switch_blender()
                if self.heartbeats.server_changed.is_set():
                    self.heartbeats.server_changed.clear()
                    worker.tasks.take_next()  # a task of the server it knew: not this one's
                    self.register()  # learns the new identity and drops stale projects
                self._claimed += 1
                self._busy += 1
            done = False
            asked = time.monotonic()
            try:
                task = worker.tasks.take_next() or self._lease(
                    worker.slot, 0.0 if burst else LONG_POLL, worker.tasks.loaded
                )
                if task is not None:
                    self.run_task(task, worker)
                    done = True
            finally:
                with self._gate:
                    self._busy -= 1
                    if done:
                        self._handled += 1
                    else:
                        self._claimed -= 1
                    self._gate.notify_all()
            if not done:
                if burst:
                    return
                if time.monotonic() - asked < 1.0:  # a server that does not hold the answer
                    self.stop_event.wait(idle * random.uniform(0.8, 1.2))
                    idle = min(idle * 1.5, IDLE_WAIT[1])
                continue
            idle = IDLE_WAIT[0]
            self.heartbeats.beat_after_task()

    def run_task(self, task: Task, worker: SlotWorker | None = None) -> None:
        """Do one leased task to its end (see `tasks`); Stopped when the node stops meanwhile."""
        if (worker or self.workers[0]).tasks.run(task):
            with self._gate:
                self.chunks_done += 1

    def _stopping(self) -> None:
        held = [w.in_flight.task for w in self.workers if w.in_flight.task]
        doing = (
            "handing task " + ", ".join(str(t.id) for t in held) + " back"
            if held
            else "no task in hand"
        )
        self.say(f"stopping: {doing} (a second signal kills Blender at once)")
        self.stop_event.set()

    def _stopping_now(self) -> None:
        self.say("stopping now: killing Blender")
        self.stop_event.set()

    def stop(self) -> None:
        """Stop soon (a second call: now). Safe from any thread and from a signal handler."""
        self.stop_request.ask()
