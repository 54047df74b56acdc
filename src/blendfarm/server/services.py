"""The farm behind the API: its services, built once per app, and its background threads.

Routes reach the farm only through these services: `submissions` (projects in and out),
`dispatch` (the node protocol), `views` (what people read), `previews` (frames as they
grow), `admin` (farm-wide actions).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..settings import Settings
from .admin import Admin
from .auth import Guard, load_secrets
from .bell import WorkBell
from .blender_shelf import BlenderShelf
from .compositing import Compositor
from .controls import Controls
from .dispatch import Dispatch
from .files import DataDir
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

    def close(self) -> None:
        """Stop collecting log lines and encoding, and close the database."""
        log.removeHandler(self.admin.logs)
        self.compositor.close()
        self.store.close()


def build_farm(settings: Settings, store: Store | None = None) -> Farm:
    """The farm of `settings`: data dir, database, secrets and the services over them."""
    data = DataDir(settings.data)
    store = store or Store(data.db_path)
    secrets = load_secrets(data.root, settings.token, settings.password)
    guard = Guard(secrets, fixed_password=bool(settings.password))
    blender = BlenderShelf(data, store)
    bell = WorkBell()
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
        dispatch=Dispatch(settings, store, data, blender, guard, bell),
        admin=admin,
        compositor=Compositor(store, data, bell),
        bell=bell,
        controls=Controls(store, data, views, guard, bell),
        notifier=Notifier(store, settings.notify, dashboard_url(settings.host, settings.ui_port)),
        previews=Previews(store, data),
    )


class Background:
    """Three daemon threads: the reaper (leases, offline nodes, notices to send), the
    compositor and the notifier's sender."""

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
        for t in self._threads:
            t.join(timeout=30)
        self.farm.notifier.stop()

    def reap(self) -> None:
        if reap(self.farm.store, self.farm.settings):
            self.farm.bell.ring()
        self.farm.notifier.tick()

    def composite_all(self) -> None:
        self.farm.compositor.composite_all()

    def _reap_loop(self) -> None:
        self._loop(self.reap, "lease reaper", always=True)

    def _composite_loop(self) -> None:
        self._loop(self.composite_all, "compositing pass", always=False)

    def _loop(self, work: Callable[[], None], what: str, always: bool) -> None:
        """Run `work` every interval (or only when the store changed) until stopped."""
        while not self._stop.wait(self.interval):
            if not always:
                version = self.farm.store.db.version
                if version == self._seen_version:
                    continue
                self._seen_version = version
            try:
                work()
            except Exception:  # keep the farm alive; the next tick tries again
                log.exception("%s failed", what)
