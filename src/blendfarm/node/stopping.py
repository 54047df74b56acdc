"""How a node stops: signals only raise flags; a guard thread turns them into actions.

A signal handler runs on the main thread between two bytecodes, possibly while that thread
holds a lock (inside `threading.Event.wait`, a renderer's lock, the logging lock...). So the
handler takes no lock at all: it sets two plain flags and writes one byte to a pipe. The
node's guard thread wakes on that byte and acts, from its own thread:

- first SIGTERM or SIGINT, stop soon: no new work; Blender is asked to end (SIGTERM to its
  process group) and killed if it is still there `GRACE` seconds later; the task in hand goes
  back to the server; the node leaves.
- a second one, stop now: Blender's process groups are killed at once (SIGKILL).

`interruptible` runs a long step (a download, an unpack) on a helper thread, so the node's
main thread can walk away from it the moment a stop is asked for.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

from ..client import Stopped

T = TypeVar("T")
GRACE = 2.0  # seconds Blender has to end on SIGTERM before it is killed
TICK = 0.2  # how often the guard re-checks while stopping (Blenders started meanwhile)


class StopRequest:
    """What was asked for: `soon` after the first request, `now` after a second one.

    `ask()` is safe in a signal handler: it only sets attributes and writes to a pipe.
    """

    def __init__(self) -> None:
        self.soon = False
        self.now = False
        self._read, self._write = os.pipe()
        self._fds: tuple[int, ...] = (self._read, self._write)
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def ask(self) -> None:
        """Stop soon; asked a second time, stop now."""
        if self.soon:
            self.now = True
        self.soon = True
        self.wake()

    def wake(self) -> None:
        """Wake whoever waits in `wait` (without asking for anything)."""
        try:
            os.write(self._write, b"!")
        except BlockingIOError:
            pass  # the pipe is full of unread wake-ups: the waiter will wake anyway

    def wait(self, timeout: float | None) -> None:
        """Sleep until `ask`/`wake` is called or `timeout` seconds pass."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if ready:
            try:
                while os.read(self._read, 512):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        """Free the pipe; only once nothing can ask or wait any more."""
        fds, self._fds = getattr(self, "_fds", ()), ()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()

    def handler(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: raises the flags, nothing more."""
        self.ask()

    def install(self, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Route SIGTERM and SIGINT to this request (call from the main thread)."""
        for sig in signals:
            signal.signal(sig, self.handler)


class StopGuard:
    """The thread that carries a `StopRequest` out while a node runs.

    `on_soon()` / `on_now()` are called once each when the flags first go up; while stopping,
    `kill(polite)` is called every TICK: politely until GRACE has passed, then not.
    """

    def __init__(
        self,
        request: StopRequest,
        on_soon: Callable[[], None],
        on_now: Callable[[], None],
        kill: Callable[[bool], None],
    ):
        self.request = request
        self.on_soon, self.on_now, self.kill = on_soon, on_now, kill
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="stop-guard", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        """The node is done: let the guard go (it kills what is still running first)."""
        self._finished = True
        self.request.wake()
        self._thread.join(timeout=GRACE + 1)

    def _run(self) -> None:
        soon_at: float | None = None
        now_seen = False
        while True:
            self.request.wait(TICK if soon_at is not None else None)
            if self.request.soon and soon_at is None:
                soon_at = time.monotonic()
                self.on_soon()
            if self.request.now and not now_seen:
                now_seen = True
                self.on_now()
            if soon_at is not None:
                self.kill(not now_seen and time.monotonic() - soon_at < GRACE)
            if self._finished:
                return


def interruptible(step: Callable[[], T], stop: threading.Event, name: str = "step") -> T:
    """`step()` on a helper thread; its result or exception, or Stopped once `stop` is set.

    On a stop the helper is left to finish or fail on its own (a daemon thread: it ends with
    the process at the latest); `step` should check `stop` itself where it can.
    """
    results: list[T] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            results.append(step())
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name=name, daemon=True).start()
    while not done.wait(0.1):
        if stop.is_set():
            raise Stopped()
    if errors:
        raise errors[0]
    return results[0]
