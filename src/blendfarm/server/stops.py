"""Tasks nodes must stop now, told at once rather than at their next heartbeat.

When the store takes a lease away while its node still renders (the other copy of a
duplicated chunk finished first), it posts the task here. Every node keeps one stop request
waiting on the server (`GET /api/nodes/{name}/stops?wait=N`, a long poll); a post wakes the
waiting requests, and the one of that node answers with the task ids, so its Blender stops
within a round trip. The board lives in memory only: after a restart, or for a node that
does not listen, the heartbeat's `cancel` still says the same thing (the lease is gone).
"""

from __future__ import annotations

import threading

from .bell import WorkBell

KEPT = 1000  # stops kept per node that never comes for them (the oldest go first)


class StopBoard:
    """Per node, the ids of the tasks it must stop; safe to post from any thread."""

    def __init__(self) -> None:
        self.bell = WorkBell()  # rung on every post: waiting stop requests look again
        self._lock = threading.Lock()
        self._pending: dict[str, list[int]] = {}
        self._leaving: set[str] = set()

    def post(self, node: str, task_id: int) -> None:
        """`node` must stop rendering `task_id` now."""
        with self._lock:
            pending = self._pending.setdefault(node, [])
            if task_id not in pending:
                pending.append(task_id)
                del pending[:-KEPT]
        self.bell.ring()

    def leave(self, node: str) -> None:
        """`node` said goodbye: its waiting stop request answers now (with what is pending)."""
        with self._lock:
            self._leaving.add(node)
        self.bell.ring()

    def take(self, node: str) -> tuple[list[int], bool]:
        """The tasks `node` must stop (forgotten once taken), and whether it is leaving."""
        with self._lock:
            leaving = node in self._leaving
            self._leaving.discard(node)
            return self._pending.pop(node, []), leaving
