"""The farm behind the API: its services, built once per app, and its background threads.

Routes reach the farm only through these services: `submissions` (projects in and out),
`dispatch` (the node protocol), `views` (what people read), `previews` (frames as they
grow), `admin` (farm-wide actions).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from ..errors import NotFound
from ..settings import Settings
from ..states import STITCHABLE, ProjectState
from .admin import Admin
from .auth import Guard, load_secrets
from .bell import WorkBell
from .blender_shelf import BlenderShelf
from .compositing import Compositor
from .controls import Controls
from .dispatch import Dispatch
from .files import DataDir
from .frames_ready import FramesReady
from .notify import Notifier, dashboard_url
from .preview import Previews
from .reaper import reap, resume
from .store import Store
from .submissions import Submissions
from .views import Views

log = logging.getLogger("blendfarm.server")


@dataclass
class Farm:
    """Every service of one server, sharing one store and data dir."""

    settings: Settings
    store: Store
    data: DataDir
    guard: Guard
    views: Views
    submissions: Submissions
    dispatch: Dispatch
    admin: Admin
    compositor: Compositor
    bell: WorkBell
    controls: Controls
    notifier: Notifier
    previews: Previews
    ready: FramesReady

    def close(self) -> None:
        """Stop collecting log lines and encoding, and close the database."""
        log.removeHandler(self.admin.logs)
        self.compositor.close()
        self.dispatch.durable_async.close()
        self.store.close()


def build_farm(settings: Settings, store: Store | None = None) -> Farm:
    """The farm of `settings`: data dir, database, secrets and the services over them."""
    data = DataDir(settings.data)
    store = store or Store(data.db_path)
    secrets = load_secrets(data.root, settings.token, settings.password)
    guard = Guard(secrets, fixed_password=bool(settings.password))
    blender = BlenderShelf(data, store)
    bell = WorkBell()
    ready = FramesReady()
    views = Views(settings, store, data, blender)
    admin = Admin(store, data, guard, blender, views)
    log.addHandler(admin.logs)
    log.setLevel(logging.INFO)
    return Farm(
        settings=settings,
        store=store,
        data=data,
        guard=guard,
        views=views,
        submissions=Submissions(settings, store, data, views, guard, bell),
        dispatch=Dispatch(settings, store, data, blender, guard, bell, ready),
        admin=admin,
        compositor=Compositor(store, data, bell, ready),
        bell=bell,
        controls=Controls(store, data, views, guard, bell),
        notifier=Notifier(store, settings.notify, dashboard_url(settings.host, settings.ui_port)),
        previews=Previews(store, data),
        ready=ready,
    )


class Background:
    """Three daemon threads: the reaper (leases, offline nodes, notices to send), the
    compositor and the notifier's sender.

    The compositor stitches a frame as soon as its last chunk is in (`FramesReady` wakes it)
    and finishes the project with its last frame. Besides, it looks at every project once at
    start (a crash may have left frames to stitch), and every `interval` seconds, when the
    farm changed, at the projects waiting in `compositing` (a retried project whose chunks
    were all done gets there without a chunk landing)."""

    def __init__(self, farm: Farm, interval: float = 0.5):
        self.farm = farm
        self.interval = interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seen_version = -1

    def start(self) -> None:
        resume(self.farm.store, self.farm.settings)  # before the reaper's first pass
        self.farm.notifier.start()
        for target, name in ((self._reap_loop, "reaper"), (self._composite_loop, "compositor")):
            t = threading.Thread(target=target, name=f"blendfarm-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self.farm.ready.wake()
        for t in self._threads:
            t.join(timeout=30)
        self.farm.notifier.stop()

    def reap(self) -> None:
        if reap(self.farm.store, self.farm.settings):
            self.farm.bell.ring()
        self.farm.notifier.tick()
        self.farm.store.db.checkpoint()

    def composite_all(self) -> None:
        """Stitch every frame whose chunks are in, finish every project that is complete."""
        self.farm.compositor.composite_all()

    def composite_ready(self) -> None:
        """Stitch the frames whose last chunk landed since the last call (and while it runs).

        A project whose every chunk is in goes first: its result is what someone waits for,
        while a long animation's frames can wait a moment. Frames landing meanwhile join
        the queue, so a still done mid-pass is not held behind the whole pass."""
        pending: dict[str, set[int]] = {}
        first: dict[str, bool] = {}
        while not self._stop.is_set():
            for pid, frames in self.farm.ready.take().items():
                pending.setdefault(pid, set()).update(frames)
                first[pid] = self._all_in(pid)
            if not pending:
                return
            pid = min(pending, key=lambda p: not first[p])  # stable: else in landing order
            self._composite(pid, pending.pop(pid))

    def _all_in(self, pid: str) -> bool:
        try:
            return self.farm.store.projects.get(pid).state is ProjectState.COMPOSITING
        except NotFound:
            return False

    def composite_waiting(self) -> None:
        """Finish the projects in `compositing` (all their chunks are in)."""
        for row in self.farm.store.projects.all():
            if row.state is ProjectState.COMPOSITING:
                self._composite(row.id, None)

    def _composite(self, pid: str, frames: set[int] | None) -> None:
        try:
            row = self.farm.store.projects.get(pid)
            if row.state not in STITCHABLE:  # paused or cancelled meanwhile: left as it is
                return
            self.farm.compositor.composite(row, frames)
        except NotFound:
            return  # deleted meanwhile
        except Exception as exc:
            log.exception("compositing project %s failed", pid)
            with suppress(NotFound):
                self.farm.store.projects.set_error(pid, f"compositing failed: {exc}")

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._guarded(self.reap, "lease reaper")

    def _composite_loop(self) -> None:
        self._guarded(self.composite_all, "compositing pass")
        looked = time.monotonic()
        while not self._stop.is_set():
            self.farm.ready.wait(max(0.0, looked + self.interval - time.monotonic()))
            if self._stop.is_set():
                break
            self._guarded(self.composite_ready, "compositing pass")
            if time.monotonic() - looked >= self.interval:
                looked = time.monotonic()
                version = self.farm.store.db.version
                if version != self._seen_version:
                    self._seen_version = version
                    self._guarded(self.composite_waiting, "compositing pass")

    @staticmethod
    def _guarded(work: Callable[[], None], what: str) -> None:
        try:
            work()
        except Exception:  # keep the farm alive; the next tick tries again
            log.exception("%s failed", what)
