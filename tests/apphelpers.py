"""In-process farm for API tests: the real app and store, a simulated node (no Blender)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from starlette.testclient import TestClient

from blendfarm.pngio import write_png
from blendfarm.server.app import create_app
from blendfarm.server.services import Background
from blendfarm.settings import Settings

TOKEN = "tok-123"
PASSWORD = "pw-456"
NODE = {"Authorization": f"Bearer {TOKEN}"}
ADMIN = {"X-Blendfarm-Password": PASSWORD}
PROBE = {
    "resolution_x": 31,
    "resolution_y": 23,
    "resolution_percentage": 100,
    "frame_start": 1,
    "frame_end": 2,
    "fps": 24,
    "fps_base": 1.0,
}


def fake_project_zip(
    names: tuple[str, ...] = ("scene.blend",), header: bytes = b"BLENDER-v304"
) -> bytes:
    """A zip the server takes for a project: .blend headers without scenes (no Blender here)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in names:
            zf.writestr(name, header + b"\0" * 64)
        zf.writestr("textures/t.png", b"not really")
    return buf.getvalue()


class InProcessFarm:
    def __init__(self, root: Path, **settings: Any):
        given = {"token": TOKEN, "password": PASSWORD, "host": "127.0.0.1", **settings}
        self.settings = Settings(data=root / "data", **given)
        self.app = create_app(self.settings, background=False)
        self.farm = self.app.state.farm
        self.background = Background(self.farm)
        self.client = TestClient(
            self.app, raise_server_exceptions=False, base_url="http://127.0.0.1:2254"
        )

    def submit(
        self,
        data: dict[str, str] | None = None,
        content: bytes | None = None,
        filename: str = "p.zip",
    ) -> Any:
        return self.client.post(
            "/api/projects",
            data=data or {},
            files={"file": (filename, content if content is not None else fake_project_zip())},
        )

    def lease(self, node: str = "n1") -> dict[str, Any] | None:
        resp = self.client.post(f"/api/nodes/{node}/lease", headers=NODE)
        assert resp.status_code in (200, 204), resp.text
        return resp.json() if resp.status_code == 200 else None

    def register(self, node: str = "n1") -> None:
        resp = self.client.post(
            f"/api/nodes/{node}/register", headers=NODE, json={"blender_version": "3.4.1"}
        )
        assert resp.status_code == 200, resp.text

    def answer(self, task: dict[str, Any], probe: dict[str, Any] | None = None) -> Any:
        """Do a task as a node would, with a synthetic image of the chunk's size."""
        if task["kind"] == "probe":
            return self.client.post(
                f"/api/tasks/{task['id']}/probe",
                params={"lease": task["lease"]},
                headers=NODE,
                json=probe or PROBE,
            )
        rect = task["rect"]
        return self.client.put(
            f"/api/tasks/{task['id']}/result",
            params={"lease": task["lease"]},
            headers=NODE,
            content=png_bytes(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"], task["frame"]),
        )

    def run_all(self, node: str = "n1") -> int:
        count = 0
        while (task := self.lease(node)) is not None:
            assert self.answer(task).status_code == 200
            count += 1
        self.background.composite_all()
        return count


def png_bytes(w: int, h: int, value: int = 0) -> bytes:
    import tempfile

    img = np.full((h, w, 4), (value * 40) % 256, dtype=np.uint8)
    img[:, :, 3] = 255
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.png"
        write_png(path, img)
        return path.read_bytes()
