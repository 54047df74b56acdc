"""Frames whose last chunk just landed, waiting for the compositor's thread.

The result path adds a frame the moment its last chunk is recorded done and wakes the
compositor, which stitches it (and finishes the project when it was the last frame) at once
instead of at its next look round the farm.
"""

from __future__ import annotations

import threading


class FramesReady:
    """A set of (project, frame) to stitch, and a wake-up for the thread that stitches them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: dict[str, set[int]] = {}
        self._woken = False

    def add(self, pid: str, frame: int) -> None:
        """Every chunk of `frame` is in: wake the compositor (from any thread)."""
        with self._cond:
            self._frames.setdefault(pid, set()).add(frame)
            self._woken = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake the compositor with nothing added (to stop it, or to look round)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait until woken or `timeout` seconds passed; True when woken."""
        with self._cond:
            woken = self._cond.wait_for(lambda: self._woken, timeout)
            self._woken = False
            return woken

    def take(self) -> dict[str, set[int]]:
        """Every frame added since the last take, by project."""
        with self._cond:
            frames, self._frames = self._frames, {}
            return frames
