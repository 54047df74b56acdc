"""Telling people a project is done or in error, through Apprise URLs (ntfy, e-mail, Slack,
Discord, Matrix, json://... : the `apprise` library does the sending).

The notifier runs on its own thread: a pass finds projects whose state (done or error) was
not told yet, marks them told and hands the messages to a sender thread. A notifier that is
slow, unreachable or wrong is logged and never holds up the farm.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass

from ..states import ProjectState
from ..timing import duration_text
from .rows import ProjectRow
from .store import Store

log = logging.getLogger("blendfarm.server")
TOLD = frozenset({ProjectState.DONE, ProjectState.ERROR})


@dataclass(frozen=True)
class Notice:
    urls: tuple[str, ...]
    title: str
    body: str


def notice_for(row: ProjectRow, farm_urls: tuple[str, ...], dashboard: str, now: float) -> Notice:
    """What to send about a project that reached done or error, and to whom."""
    urls = farm_urls + ((row.notify,) if row.notify else ())
    taken = duration_text(now - row.created)
    if row.state is ProjectState.DONE:
        title = f"blendfarm: {row.title} is done"
        body = f"{row.title} ({row.id}) finished in {taken}.\n{dashboard}"
    else:
        title = f"blendfarm: {row.title} failed"
        first = (row.error or "unknown error").splitlines()[0][:300]
        body = f"{row.title} ({row.id}) stopped with an error after {taken}: {first}\n{dashboard}"
    return Notice(urls, title, body)


def send(notice: Notice) -> bool:
    """Send through Apprise; False (logged) when any target failed or none was valid."""
    import apprise

    sender = apprise.Apprise()
    valid = [u for u in notice.urls if sender.add(u)]
    if len(valid) != len(notice.urls):
        log.warning("a notification URL is not one Apprise knows; it is skipped")
    if not valid:
        return False
    ok = bool(sender.notify(title=notice.title, body=notice.body))
    if not ok:
        log.warning("notification %r could not be delivered", notice.title)
    return ok


def dashboard_url(host: str, ui_port: int) -> str:
    name = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    return f"http://{name}:{ui_port}/"


class Notifier:
    """Finds projects to tell about and sends on a thread of its own."""

    def __init__(self, store: Store, farm_urls: str, dashboard: str):
        self.store = store
        self.farm_urls = tuple(u for u in farm_urls.split() if u)
        self.dashboard = dashboard
        self._outbox: queue.Queue[Notice | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._send_loop, name="blendfarm-notify", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._outbox.put(None)
            self._thread.join(timeout)

    def collect(self) -> list[Notice]:
        """Mark every newly done or failed project told; the notices to send for them."""
        out = []
        for row in self.store.projects.to_notify(TOLD):
            self.store.projects.mark_notified(row.id, row.state)
            if self.farm_urls or row.notify:
                out.append(notice_for(row, self.farm_urls, self.dashboard, time.time()))
        return out

    def tick(self) -> None:
        for notice in self.collect():
            self._outbox.put(notice)

    def _send_loop(self) -> None:
        while (notice := self._outbox.get()) is not None:
            try:
                send(notice)
            except Exception:  # a notifier never takes the farm down
                log.exception("sending notification %r failed", notice.title)
