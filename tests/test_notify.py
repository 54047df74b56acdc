"""Notifications go out through Apprise to a real local target (json:// to a small HTTP
receiver started here); a failing notifier is logged and the farm goes on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest

from apphelpers import ADMIN, PROBE, InProcessFarm
from blendfarm.server.notify import Notice, send


class Receiver:
    """An HTTP server that keeps every JSON body posted to it (or answers `status`)."""

    def __init__(self, status: int = 200):
        self.bodies: Queue[dict[str, Any]] = Queue()
        received, answer = self.bodies, status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                received.put(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(answer)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, wait: float = 30.0) -> dict[str, Any]:
        return self.bodies.get(timeout=wait)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def notifying_farm(root: Path, **settings: Any) -> InProcessFarm:
    farm = InProcessFarm(root, **settings)
    farm.farm.notifier.start()
    return farm


def close(farm: InProcessFarm) -> None:
    farm.farm.notifier.stop()
    farm.client.close()
    farm.farm.close()


def test_the_farm_tells_its_notifiers_when_a_project_is_done(
    tmp_path: Path, receiver: Receiver
) -> None:
    farm = notifying_farm(tmp_path, notify=receiver.url)
    try:
        pid = farm.submit({"frame": "1", "title": "Teapot"}).json()["id"]
        farm.run_all()
        farm.background.reap()
        body = receiver.next()
        assert "Teapot is done" in body["title"]
        assert pid in body["message"] and "http://" in body["message"]
        farm.background.reap()  # told once only
        with pytest.raises(Empty):
            receiver.next(wait=0.5)
    finally:
        close(farm)


def test_a_project_can_bring_its_own_notification_url_and_errors_are_told(
    tmp_path: Path, receiver: Receiver
) -> None:
    farm = notifying_farm(tmp_path)  # no farm-wide URL
    try:
        answer = farm.submit({"frame": "1", "tiles": "2", "notify": receiver.url}).json()
        assert answer["notify"] is True
        probe = farm.lease()
        farm.answer(probe, {**PROBE, "resolution_x": 0})  # type: ignore[arg-type]
        farm.background.reap()
        body = receiver.next()
        assert "failed" in body["title"] and answer["id"] in body["message"]
        quiet = farm.submit({"frame": "1"}).json()  # no URL at all: nothing is sent
        farm.client.delete(f"/api/projects/{answer['id']}", headers=ADMIN)
        farm.run_all()
        farm.background.reap()
        assert farm.client.get(f"/api/projects/{quiet['id']}").json()["state"] == "done"
        with pytest.raises(Empty):
            receiver.next(wait=0.5)
    finally:
        close(farm)


def test_a_bad_notification_url_is_refused_at_submit(tmp_path: Path) -> None:
    farm = InProcessFarm(tmp_path)
    try:
        resp = farm.submit({"frame": "1", "notify": "not a url"})
        assert resp.status_code == 400 and "Apprise" in resp.json()["error"]["message"]
    finally:
        close(farm)


def test_a_failing_notifier_is_logged_and_never_stops_the_farm(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Receiver(status=500)
    try:
        assert send(Notice((broken.url,), "t", "b")) is False
        assert broken.next()["title"] == "t"
        assert "could not be delivered" in caplog.text
        farm = notifying_farm(tmp_path, notify=broken.url + " json://127.0.0.1:1/nothing")
        try:
            for _ in range(2):
                pid = farm.submit({"frame": "1"}).json()["id"]
                farm.run_all()
                farm.background.reap()
                assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
            broken.next()  # it was tried, failed, and the farm went on
        finally:
            close(farm)
    finally:
        broken.close()
