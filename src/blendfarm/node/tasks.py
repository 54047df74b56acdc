"""One leased task from start to end: rendered and sent, failed and reported, or handed back.

A task never ends the node. Whatever goes wrong with one task (Blender fails, the project
archive is damaged, the disk is full, the server refuses the result) is reported to the
server as that task's failure, with its message, and the node goes on with the next task.
An exception nobody expected (a bug in the node) is logged with its traceback and reported
the same way, as "internal error in the node: ...", so the server's failure count ends it
rather than the node retrying it forever. Only a stop ends a task early: it is handed back.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ..client import ApiClient, FollowUp, Stopped
from ..errors import BlenderFailed, BlendfarmError, Conflict, InsufficientStorage
from ..formats import CHUNK_KINDS, ChunkKind, chunk_file_name, kind_of_chunk_file
from ..protocol import Failure, Probe, Task, convert
from ..settings import NodeSettings
from ..states import TaskKind
from .blender import Renderer
from .chunks import finish_chunk, tiff_as_png
from .finish_tasks import finish_frame
from .heartbeat import InFlight
from .projects import ProjectCache
from .stopping import interruptible

log = logging.getLogger("blendfarm.node")
LOG_TAIL = 30  # Blender's last lines sent with a failure


def failure_message(exc: Exception) -> str:
    """The sentence a failed task is reported with."""
    if isinstance(exc, BlendfarmError):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return f"the node's disk is full: {exc}"
        return f"node error: {exc}"
    return f"internal error in the node: {type(exc).__name__}: {exc}"


def expected(exc: Exception) -> bool:
    """A failure of the task itself, as opposed to a bug in the node."""
    return isinstance(exc, BlendfarmError | OSError)


class TaskRunner:
    """Runs the tasks one slot of a node leases, one at a time (`device`: the slot's)."""

    def __init__(
        self,
        name: str,
        settings: NodeSettings,
        work: Path,
        client: ApiClient,
        projects: ProjectCache,
        in_flight: InFlight,
        renderer: Callable[[], Renderer],
        stop: threading.Event,
        say: Callable[[str], None],
        device: str = "",
        gpu: bool = False,
        goes_on: Callable[[], bool] = lambda: False,
    ):
        self.name = name
        self.device = device
        self.settings = settings
        self.out_dir = work / "out"
        self.client = client
        self.projects = projects
        self.in_flight = in_flight
        self.renderer = renderer
        self.stop = stop
        self.say = say
        self.loaded = ""  # the content_sha this slot's warm Blender has loaded ('' if none)
        self.slot_kind = "gpu" if gpu else "cpu"
        # Asked at each result: may it bring this slot's next task (else the node leases on its
        # own, e.g. it stops soon)? The task the answer brought waits in `_next`.
        self.goes_on = goes_on
        self._next: Task | None = None

    def _follow_up(self, task: Task) -> FollowUp | None:
        """Whom a result asks the next task for (the content loaded then is preferred)."""
        if not self.goes_on():
            return None
        return FollowUp(self.name, self.slot_kind, task.content_sha if self.settings.warm else "")

    def take_next(self) -> Task | None:
        """The task the last result's answer brought (once), or None."""
        task, self._next = self._next, None
        return task

    def run(self, task: Task) -> bool:
        """Do `task`; True when a chunk was delivered. Raises Stopped (task handed back)."""
        self.in_flight.begin(task)
        try:
            try:
                delivered = self._work(task)
                self.loaded = task.content_sha if self.settings.warm else ""
                return delivered
            except Stopped:
                self.loaded = ""
                raise
            except Exception as exc:
                self.loaded = ""  # Blender may have been stopped or failed: nothing is loaded
                if not expected(exc):
                    log.error("task %s: %s", task.id, failure_message(exc), exc_info=exc)
                if self.stop.is_set():  # Blender was stopped because the node is stopping
                    raise Stopped() from None
                self._failed(task, exc)
                return False
        except Stopped:
            self.client.release(task)
            raise
        finally:
            self.in_flight.end()

    def _failed(self, task: Task, exc: Exception) -> None:
        message = failure_message(exc)
        if self.in_flight.lost.is_set():
            self.say(f"task {task.id} went to another node meanwhile: Blender stopped")
            return
        tail = exc.log[-LOG_TAIL:] if isinstance(exc, BlenderFailed) else []
        self.say(f"task {task.id} failed: {message}")
        try:
            self.client.fail(task, Failure(node=self.name, message=message, log=tail))
        except BlendfarmError as err:  # e.g. the lease is gone: the server has moved on
            self.say(f"the server did not take the failure of task {task.id}: {err}")

    def _work(self, task: Task) -> bool:
        folder = interruptible(lambda: self.projects.folder(task), self.stop, "project-download")
        blend = (folder / task.blend).resolve()
        if not blend.is_relative_to(folder.resolve()) or not blend.is_file():
            raise BlendfarmError(f"{task.blend} is not in the project")
        if task.kind == TaskKind.PROBE:
            self._probe(task, blend)
            return False
        if task.kind == TaskKind.FINISH:
            return self._finish(task, blend)
        return self._chunk(task, blend)

    def _finish(self, task: Task, blend: Path) -> bool:
        self.say(f"finishing {task.title} frame {task.frame} (denoise and composite)")
        timeout = task.timeout or self.settings.chunk_timeout
        options = {"threads": self.settings.threads, "timeout": timeout}
        passes = final = None
        try:
            passes, final = finish_frame(
                task,
                blend,
                self.out_dir,
                self.client,
                self.renderer(),
                options,
                self.in_flight.blender_finished,
            )
            if self.in_flight.lost.is_set():
                self.say(f"task {task.id} went to another node meanwhile: result dropped")
                return False
            return self._deliver(task, final.read_bytes(), "final")
        finally:
            for path in (passes, final):
                if path is not None:
                    path.unlink(missing_ok=True)

    def _probe(self, task: Task, blend: Path) -> None:
        found = self.renderer().probe(blend)
        self.in_flight.blender_finished()
        probe = convert(found, Probe, "what Blender read from the scene")
        self.client.send_probe(task, probe)
        self.say(
            f"probed {task.title}: {probe.resolution_x}x{probe.resolution_y} "
            f"at {probe.resolution_percentage}%"
        )

    def _chunk(self, task: Task, blend: Path) -> bool:
        if task.frame is None or task.rect is None or task.render_rect is None:
            raise BlendfarmError(f"the server sent chunk {task.id} without its frame or rectangle")
        self.out_dir.mkdir(exist_ok=True)
        # Blender writes a PNG chunk here, an EXR or raw one next to it (by its kind).
        scratch = [self.out_dir / chunk_file_name(str(task.id), kind) for kind in CHUNK_KINDS]
        output = scratch[0]
        scratch.append(output.with_suffix(".tif"))  # a TIFF scene's chunk, sent as PNG
        for path in scratch:
            path.unlink(missing_ok=True)
        on = f" on {self.device}" if self.device else ""
        self.say(f"rendering {task.title} frame {task.frame} chunk {task.row},{task.col}{on}")
        try:
            written = self.renderer().render(
                blend,
                {
                    "frame": task.frame,
                    "border": task.border,
                    "output": str(output),
                    "threads": self.settings.threads,
                    "timeout": task.timeout or self.settings.chunk_timeout,
                    "scene_device": task.scene_device,
                    "tiles": task.tiles or 1,
                    "finish": task.finish,
                },
            )
            self.in_flight.blender_finished()
            # A chunk Blender finished is delivered even when a stop came meanwhile (it takes
            # a moment); one it did not finish went down with Blender and is handed back.
            if self.in_flight.lost.is_set():
                self.say(f"task {task.id} went to another node meanwhile: result dropped")
                return False
            if written not in scratch:
                raise BlendfarmError(f"Blender wrote the chunk to an unexpected file {written}")
            if written.suffix == ".tif":
                tiff_as_png(written, output)
                written = output
            kind = kind_of_chunk_file(written.name)
            finish_chunk(written, task.render_rect, task.rect, kind)
            if kind == "raw":
                self.say(f"chunk {task.row},{task.col} rendered raw (its frame is finished whole)")
            return self._deliver(task, written.read_bytes(), kind)
        finally:
            for path in scratch:
                path.unlink(missing_ok=True)

    def _deliver(self, task: Task, data: bytes, kind: ChunkKind | Literal["final"]) -> bool:
        try:
            answer = self.client.send_result(task, data, kind, self._follow_up(task))
        except Conflict:
            self.say(f"task {task.id} went to another node meanwhile: result dropped")
            return False
        except InsufficientStorage as exc:
            raise BlendfarmError(f"the server could not store the chunk: {exc}") from None
        except BlendfarmError as exc:
            raise BlendfarmError(f"the server refused the chunk: {exc}") from None
        self._next = answer.next
        if not answer.accepted:
            self.say(f"chunk {task.id} was not needed: {answer.reason or 'already done'}")
            return False
        return True
