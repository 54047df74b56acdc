"""What people read: projects, nodes and the farm at a glance, shaped as `protocol` messages.

Views only read the store and the data dir; they never change anything.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from .. import protocol as p
from ..blendversion import can_open
from ..errors import Conflict, NotFound
from ..formats import media_type
from ..rest_hours import node_rests
from ..settings import Settings
from ..states import ProjectState
from ..timing import eta_range, frame_seconds, throughput
from .blender_shelf import BlenderShelf
from .files import DataDir
from .rows import NodeRow, ProjectCounts, ProjectRow
from .store import Store

OFFLINE_SHOWN = 3600.0  # offline nodes stay listed this long
LOG_TAIL = 8


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def waiting_reason(
    state: ProjectState,
    file_version: str | None,
    online_blenders: list[str | None],
    require_tags: frozenset[str] = frozenset(),
    online_tags: list[frozenset[str]] | None = None,
) -> str | None:
    """Why a project that has work gets none: paused, no node online, none with a new enough
    Blender, or none with the tags it requires."""
    if state is ProjectState.PAUSED:
        return "paused: resume it to go on"
    if state not in (ProjectState.QUEUED, ProjectState.RENDERING):
        return None
    if not online_blenders:
        return "waiting for a node to come online"
    if file_version and not any(can_open(v, file_version) for v in online_blenders):
        have = ", ".join(sorted({str(v) for v in online_blenders}))
        return f"waiting for a node with Blender {file_version} or newer (online nodes run {have})"
    if require_tags and not any(require_tags <= t for t in (online_tags or [])):
        return f"waiting for a node tagged {', '.join(sorted(require_tags))}"
    return None


def safe_stem(title: str) -> str:
    """A title as a file name stem: letters, digits, '-' and '_'."""
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in title)
    return "-".join(filter(None, keep.split("-")))[:60]


class Views:
    """Read-only shapes of the farm for the API and the event stream."""

    def __init__(self, settings: Settings, store: Store, data: DataDir, blender: BlenderShelf):
        self.settings = settings
        self.store = store
        self.data = data
        self.blender = blender
        self._event_lock = threading.Lock()
        self._event_cache: tuple[int, bytes] = (-1, b"")

    @property
    def version(self) -> int:
        """Grows on every change of the farm (the event stream watches it)."""
        return self.store.db.version

    # -- projects ---------------------------------------------------------------------------

    def project(self, pid: str) -> p.Project:
        row = self.store.projects.get(pid)
        times = self._times(self.store.projects.chunk_times(pid))
        view = self._project(row, self.store.projects.counts(pid), times)
        return self._with_waiting(view, self.nodes())

    def projects(
        self,
        nodes: list[p.Node] | None = None,
        measured: list[tuple[str, int, float, float]] | None = None,
    ) -> list[p.Project]:
        counts = self.store.projects.counts()
        nodes = self.nodes() if nodes is None else nodes
        rows = self.store.projects.all()
        if measured is None:
            measured = self.store.projects.chunk_times()
        times = self._times(measured)
        return [self._with_waiting(self._project(r, counts, times), nodes) for r in rows]

    @staticmethod
    def _times(
        rows: list[tuple[str, int, float, float]],
    ) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for pid, frame, seconds, _finished in rows:
            out.setdefault(pid, []).append((frame, seconds))
        return out

    def _with_waiting(self, view: p.Project, nodes: list[p.Node]) -> p.Project:
        online = [n for n in nodes if n.online and not n.disabled and not n.resting]
        if not online and any(n.online for n in nodes):
            active = view.state in (ProjectState.QUEUED, ProjectState.RENDERING)
            view.waiting = "waiting: every online node is disabled or resting" if active else None
            if view.state is ProjectState.PAUSED:
                view.waiting = waiting_reason(view.state, None, [])
            return view
        view.waiting = waiting_reason(
            view.state,
            view.file_version,
            [n.blender_version for n in online],
            frozenset(view.require_tags),
            [frozenset(n.info.tags) for n in online],
        )
        return view

    def _project(
        self,
        row: ProjectRow,
        counts: dict[str, ProjectCounts],
        times: dict[str, list[tuple[int, float]]],
    ) -> p.Project:
        pid = row.id
        c = counts.get(pid, ProjectCounts())
        measured = times.get(pid, [])
        eta = eta_range([s for _f, s in measured], c.total - c.done, c.rendering)
        per_chunk = row.tiles * row.tiles
        count_of = Counter(f for f, _s in measured)
        frame_times = [
            p.FrameTime(frame=f, seconds=round(s, 3))
            for f, s in frame_seconds(measured).items()
            if count_of[f] == per_chunk
        ]
        done = row.state is ProjectState.DONE
        base = f"/api/projects/{pid}"
        return p.Project(
            id=pid,
            title=row.title,
            blend=row.blend,
            state=row.state,
            error=row.error,
            animation=row.animation,
            frame_start=row.frame_start,
            frame_end=row.frame_end,
            tiles=row.tiles,
            overscan=row.overscan,
            device=row.device,
            chunks_done=c.done,
            chunks_total=c.total,
            chunks_rendering=c.rendering,
            frames_done=c.frames,
            width=row.width,
            height=row.height,
            fps=(row.fps / row.fps_base) if row.fps and row.fps_base else None,
            size=row.size,
            created=iso(row.created) or "",
            updated=iso(row.updated) or "",
            result_url=f"{base}/result" if done else None,
            raw_url=f"{base}/raw" if done or row.state is ProjectState.CANCELLED else None,
            thumbnail_url=f"{base}/thumbnail" if row.thumbnail else None,
            result_type=media_type(row.result) if done and row.result else None,
            frames_url=f"{base}/frames" if done and row.animation else None,
            output_format=row.output_format.describe() if row.width is not None else None,
            blocklist=self.store.projects.blocklist(pid, self.settings.max_failures),
            warnings=list(row.warnings),
            file_version=row.file_version,
            waiting=None,
            owner_key=None,
            priority=row.priority,
            require_tags=list(row.require_tags),
            frame_order=row.frame_order.value,
            notify=bool(row.notify),
            finish=row.finish,
            nodes_working=c.rendering,
            eta_low=None if eta is None else round(eta[0], 1),
            eta_high=None if eta is None else round(eta[1], 1),
            frame_times=frame_times,
        )

    def finished_file(self, pid: str, kind: str) -> tuple[Path, str, str]:
        """(path, media type, download name) of a finished project's result or raw zip."""
        row = self.store.projects.get(pid)
        if row.state is not ProjectState.DONE:
            raise Conflict(f"project {pid} is not finished yet ({row.state.value})")
        stem = safe_stem(row.title) or pid
        if kind == "raw":
            raw = self.data.raw(pid)
            if not raw.exists():
                raise NotFound(
                    f"the raw chunks of project {pid} are missing from the server's disk"
                )
            return raw, "application/zip", f"{stem}-{pid}-raw.zip"
        if kind == "frames":
            if not row.animation:
                raise NotFound(f"project {pid} is a still: its result is its frame")
            frames = self.data.frames_zip(pid)
            if not frames.exists():
                raise NotFound(f"the frames of project {pid} are missing from the server's disk")
            return frames, "application/zip", f"{stem}-{pid}-frames.zip"
        name = row.result or ""
        path = self.data.project_dir(pid) / name
        if not name.startswith("result.") or not path.is_file():
            raise NotFound(f"the result of project {pid} is missing from the server's disk")
        return path, media_type(name), f"{stem}-{pid}{path.suffix}"

    def frame_file(self, pid: str, frame: int) -> tuple[Path, str, str]:
        """(path, media type, download name) of one final frame of a finished project."""
        row = self.store.projects.get(pid)
        if row.state is not ProjectState.DONE:
            raise Conflict(f"project {pid} is not finished yet ({row.state.value})")
        if row.frame_start is None or row.frame_end is None:
            raise NotFound(f"project {pid} has no frames")
        if not row.frame_start <= frame <= row.frame_end:
            raise NotFound(f"project {pid} renders frames {row.frame_start}-{row.frame_end}")
        path = self.data.find_frame(pid, frame)
        stem = safe_stem(row.title) or pid
        return path, media_type(path.name), f"{stem}-{pid}-{frame:04d}{path.suffix}"

    def thumbnail(self, pid: str) -> Path:
        self.store.projects.get(pid)
        path = self.data.thumbnail(pid)
        if not path.exists():
            raise NotFound(f"project {pid} has no stitched frame yet")
        return path

    # -- nodes ------------------------------------------------------------------------------

    def nodes(self) -> list[p.Node]:
        now = time.time()
        return [
            self._node(n)
            for n in self.store.nodes.all()
            if not (n.offline and now - n.last_seen > OFFLINE_SHOWN)
        ]

    def node(self, name: str) -> p.Node:
        return self._node(self.store.nodes.get(name))

    def _node(self, n: NodeRow) -> p.Node:
        cur = n.current
        info = p.convert(n.info, p.NodeInfo, "a node's stored info")
        rests = node_rests(info.schedule, datetime.now())
        state: p.NodeState = "rendering" if cur else "idle"
        if not cur and rests:
            state = "resting"
        if not cur and n.disabled:
            state = "disabled"
        if n.offline:
            state = "offline"
        return p.Node(
            name=n.name,
            online=not n.offline,
            state=state,
            blender_version=n.blender_version,
            started=iso(n.started),
            last_seen=iso(n.last_seen),
            chunks_done=n.chunks_done,
            current=None
            if cur is None
            else p.CurrentTask(
                project=cur.project_id,
                title=cur.title,
                kind=cur.kind,
                frame=cur.frame,
                row=cur.row,
                col=cur.col,
            ),
            log_tail=list(n.log[-LOG_TAIL:]),
            info=info,
            disabled=n.disabled,
            resting=rests,
            devices=list(info.devices),
            slots=list(info.slots) or ["CPU"],
        )

    def node_log(self, name: str) -> p.Lines:
        return p.Lines(lines=list(self.store.nodes.get(name).log))

    def blender_status(self) -> p.BlenderStatus:
        """The server's Blender and the Blender every node runs."""
        info = self.blender.info()
        nodes = {
            n.name: p.NodeBlender(
                version=n.blender_version, sha256=n.info.blender_sha256 or None, online=n.online
            )
            for n in self.nodes()
        }
        if info is None:
            return p.BlenderStatus(
                available=False,
                filename=None,
                sha256=None,
                size=None,
                uploaded=None,
                executable=None,
                nodes=nodes,
            )
        return p.BlenderStatus(
            available=True,
            filename=str(info["filename"]),
            sha256=str(info["sha256"]),
            size=int(info["size"]),
            uploaded=iso(float(info["uploaded"])),
            executable=str(info["executable"]),
            nodes=nodes,
        )

    # -- the farm at a glance ---------------------------------------------------------------

    def health(self) -> p.Health:
        return p.Health(ok=True, version=__version__, server_id=self.store.db.server_id)

    def status(self) -> p.Status:
        nodes = self.nodes()
        measured = self.store.projects.chunk_times()
        projects = self.projects(nodes, measured)
        usage = self.data.disk_usage()
        return p.Status(
            server_id=self.store.db.server_id,
            version=__version__,
            projects=projects,
            nodes=nodes,
            disk=p.Disk(
                total=usage["total"],
                used=usage["used"],
                free=usage["free"],
                data=sum(pr.size for pr in projects),
            ),
            throughput=throughput((t[3] for t in measured), time.time()),
        )

    def status_event(self, version: int) -> bytes:
        """The status as a server-sent event, made once per store version for every watcher."""
        with self._event_lock:
            if self._event_cache[0] != version:
                text = p.encode(self.status())
                self._event_cache = (version, b"event: status\ndata: " + text + b"\n\n")
            return self._event_cache[1]
