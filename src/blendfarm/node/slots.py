"""One slot of a node: a render session pinned to one device, taking one chunk at a time.

A node with N slots holds up to N leases at once; each slot has its own renderer (its own
warm Blender), its own task in hand (`InFlight`, renewed by the node's one heartbeat) and its
own `TaskRunner`. The renderer is made on first use, and made again after `reset` (the node
switched Blender).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .blender import Renderer
from .devices import Slot
from .heartbeat import InFlight
from .tasks import TaskRunner


class SlotWorker:
    """The renderer and the task in hand of one slot."""

    def __init__(
        self,
        slot: Slot,
        make_renderer: Callable[[Slot], Renderer],
        make_runner: Callable[[SlotWorker], TaskRunner],
    ):
        self.slot = slot
        self.in_flight = InFlight()
        self._make_renderer = make_renderer
        self._renderer: Renderer | None = None
        self._lock = threading.Lock()  # guards `_renderer`, never held while Blender works
        self.tasks = make_runner(self)

    def renderer(self) -> Renderer:
        """This slot's renderer, made on first use."""
        with self._lock:
            if self._renderer is None:
                self._renderer = self._make_renderer(self.slot)
            return self._renderer

    def abort(self, polite: bool = False) -> None:
        """Stop this slot's Blender now (see Renderer.abort); from any thread."""
        renderer = self._renderer
        if renderer is not None:
            renderer.abort(polite)

    def reset(self) -> None:
        """Close the renderer; the next task makes a new one."""
        with self._lock:
            renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.close()
