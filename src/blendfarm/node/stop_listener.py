"""Stops a render the moment the server takes its task away, not at the next heartbeat.

The node keeps one request waiting on the server (`ApiClient.stops`, a long poll); it is
answered at once with the ids of tasks this node renders but must stop (another node's copy
of a straggling chunk finished first), and the slot holding one has its Blender stopped
(`InFlight.cancel`, as for a lease the heartbeat finds gone). A server without the route
(an older one) leaves the heartbeat to say it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

from ..client import ApiClient, Stopped
from ..errors import BlendfarmError
from .heartbeat import InFlight

WAIT = 25.0  # seconds the server may hold the request (it answers at once when told)
AGAIN = 5.0  # seconds before asking again after a refusal


class StopListener:
    """Waits on the server, on its own thread, for tasks to stop; ends when `stop` is set."""

    def __init__(
        self,
        client: ApiClient,
        name: str,
        in_flight: list[InFlight],
        stop_blender: Callable[[InFlight], None],
        stop: threading.Event,
        say: Callable[[str], None],
    ):
        self.client = client
        self.name = name
        self.in_flight = in_flight  # one per slot, shared with the heartbeat (may grow)
        self.stop_blender = stop_blender
        self.stop = stop
        self.say = say
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stop-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                ids = self.client.stops(self.name, WAIT)
            except Stopped:
                return
            except BlendfarmError as exc:
                if exc.status in (404, 405):  # an older server: the heartbeat says it later
                    return
                if self.stop.wait(AGAIN):
                    return
                continue
            self.cancel(ids)

    def cancel(self, ids: list[int]) -> None:
        """Stop the Blender of every slot rendering one of the tasks `ids`."""
        for slot in list(self.in_flight):
            task = slot.task
            if task is not None and task.id in ids:
                if slot.cancel(task, partial(self.stop_blender, slot)):
                    self.say(f"task {task.id} was finished by another node: stopping Blender")
