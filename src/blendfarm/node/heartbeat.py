"""The node's heartbeat: renews the lease on the task in hand and ships Blender's log lines.

The heartbeat thread and the main loop share two things: the `LogBuffer` of lines not yet
sent and the `InFlight` task. A heartbeat answer can say the lease is gone (the task went to
another node): the heartbeat thread then stops Blender itself. It also notices a new Blender
on the server or a new server identity, which the main loop handles between tasks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial

from ..client import ApiClient
from ..errors import BlendfarmError
from ..protocol import Heartbeat, Task

LOG_KEPT = 2000  # lines kept while the server is away; the oldest half goes when it is full


class LogBuffer:
    """Blender's log lines waiting for the next heartbeat."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line[:2000])
            if len(self._lines) > LOG_KEPT:
                del self._lines[: -LOG_KEPT // 2]

    def take(self) -> list[str]:
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def put_back(self, lines: list[str]) -> None:
        """Lines a heartbeat could not deliver go first in the next one."""
        with self._lock:
            self._lines[:0] = lines


class InFlight:
    """The task the node works on, and whether its lease was lost meanwhile."""

    def __init__(self) -> None:
        self.task: Task | None = None
        self.lost = threading.Event()
        self._blender_done = False
        self._lock = threading.Lock()

    def begin(self, task: Task) -> None:
        with self._lock:
            self.task = task
            self._blender_done = False
            self.lost.clear()

    def blender_finished(self) -> None:
        """From here on a lost lease has nothing to stop."""
        with self._lock:
            self._blender_done = True

    def end(self) -> None:
        with self._lock:
            self.task = None

    def cancel(self, task: Task, stop_blender: Callable[[], None]) -> bool:
        """The lease on `task` is gone: stop Blender if it still works on it; True if so."""
        with self._lock:
            # The answer may be about a task finished meanwhile: only stop the one it names.
            if self.task is not task or self._blender_done:
                return False
            self.lost.set()
            stop_blender()
            return True


AFTER_TASK_GAP = 1.0  # seconds: at most one heartbeat as tasks end, beside the periodic ones


class Heartbeats:
    """Sends a heartbeat every `every` seconds on its own thread until `stop` is set.

    `in_flight` holds one InFlight per slot of the node (the list may grow after
    registering); `stop_blender(slot)` stops the Blender of that slot only.
    """

    def __init__(
        self,
        client: ApiClient,
        name: str,
        in_flight: list[InFlight],
        log: LogBuffer,
        stop: threading.Event,
        stop_blender: Callable[[InFlight], None],
        say: Callable[[str], None],
        follow_blender: bool,
    ):
        self.client = client
        self.name = name
        self.in_flight = in_flight
        self.log = log
        self.stop = stop
        self.stop_blender = stop_blender
        self.say = say
        self.follow_blender = follow_blender
        self.every = 10.0
        self.server_id = ""
        self.blender_sha = ""
        self.new_blender = threading.Event()
        self.server_changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = -AFTER_TASK_GAP  # when the last heartbeat was sent (monotonic)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.beat()

    def beat_after_task(self) -> None:
        """A heartbeat as a task ends (its log lines, a new Blender or server noticed before
        the next task), unless one went less than AFTER_TASK_GAP seconds ago: a node doing
        many short chunks would double its requests, each next task coming with a result."""
        if time.monotonic() - self._last >= AFTER_TASK_GAP:
            self.beat()

    def beat(self) -> None:
        """One heartbeat for the tasks of every slot; a server that does not answer is tried
        again at the next one."""
        self._last = time.monotonic()
        held = [(slot, slot.task) for slot in list(self.in_flight)]
        lines = self.log.take()
        beat = Heartbeat(tasks=[task.id for _slot, task in held if task], log=lines)
        try:
            answer = self.client.heartbeat(self.name, beat)
        except BlendfarmError as exc:
            if exc.status >= 500:  # away or failing (Unreachable is 503): keep them for later
                self.log.put_back(lines)
            return
        for slot, task in held:
            if task is not None and task.id in answer.cancel:
                if slot.cancel(task, partial(self.stop_blender, slot)):
                    self.say(f"lost the lease on task {task.id}: stopping Blender")
        if self.follow_blender and (answer.blender_sha256 or "") != self.blender_sha:
            self.new_blender.set()
        if answer.server_id and answer.server_id != self.server_id:
            self.server_changed.set()  # handled between tasks, not under a running render
