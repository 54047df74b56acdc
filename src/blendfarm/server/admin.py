"""What only the admin may do: purge the farm, change the password, give it a Blender; and
the server's own log lines, kept for the admin to read."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

from .. import protocol as p
from .auth import Guard, save_password
from .blender_shelf import BlenderShelf
from .files import DataDir
from .store import Store
from .views import Views

log = logging.getLogger("blendfarm.server")


class LogBuffer(logging.Handler):
    """The server's recent log lines, for the dashboard's settings page."""

    def __init__(self, size: int = 500):
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Admin:
    """Farm-wide actions (the routes check the admin password first)."""

    def __init__(
        self, store: Store, data: DataDir, guard: Guard, blender: BlenderShelf, views: Views
    ):
        self.store = store
        self.data = data
        self.guard = guard
        self.blender = blender
        self.views = views
        self.logs = LogBuffer()

    def server_log(self) -> p.Lines:
        return p.Lines(lines=list(self.logs.lines))

    def purge(self) -> p.Purged:
        """Forget every project, chunk and node; nodes drop their caches (new server id)."""
        self.store.purge()
        self.data.purge()
        log.warning("database purged")
        return p.Purged(purged=True)

    def change_password(self, new: str) -> p.Ok:
        """Store a new admin password (scrypt hash) and use it from now on."""
        self.guard.may_change_password()
        self.guard.secrets.password_hash = save_password(self.data.root, new)
        log.warning("the admin password was changed")
        return p.Ok(ok=True)

    def accept_blender(self, upload: Path, filename: str) -> p.BlenderStatus:
        info = self.blender.accept(upload, filename)
        log.info("new Blender for the farm: %s (%s)", info["filename"], info["sha256"][:12])
        return self.views.blender_status()
