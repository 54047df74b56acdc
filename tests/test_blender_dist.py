"""The server hands out one Blender; nodes fetch it, render with it, and switch when it changes."""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from helpers import FarmProcesses

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def blender_tarball(out: Path, blender: str, folder: str, note: str) -> Path:
    """A Linux build laid out as blender.org ships it, holding this machine's real Blender."""
    with lzma.open(out, "wb", preset=0) as xz, tarfile.open(fileobj=xz, mode="w|") as tar:
        tar.add(Path(blender).resolve(), arcname=f"{folder}/blender")
        info = tarfile.TarInfo(f"{folder}/readme.txt")
        data = note.encode()
        info.size = len(data)
        import io

        tar.addfile(info, io.BytesIO(data))
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for(predicate, timeout: float, what: str, farm: FarmProcesses):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{farm.logs()}")


def test_nodes_render_with_the_servers_blender_and_switch_to_a_new_one(
    tmp_path: Path, blender: str, project_zip: Path
) -> None:
    first = blender_tarball(
        tmp_path / "blender-3.4.1-linux-x64.tar.xz", blender, "blender-3.4.1-linux-x64", "first"
    )
    second = blender_tarball(
        tmp_path / "blender-3.4.1-linux-x86_64.tar.xz",
        blender,
        "blender-3.4.1-linux-x86_64",
        "second",
    )
    farm = FarmProcesses(tmp_path, node_timeout=3)
    farm.start_server()
    try:
        # A node with no Blender anywhere says so and waits.
        farm.env = dict(farm.env, PATH="/nonexistent")
        farm.start_node("fresh")
        farm.env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
        wait_for(
            lambda: "no Blender to render with" in farm.log("node-fresh"),
            60,
            "the node to say it has no Blender",
            farm,
        )
        pid = json.loads(
            farm.cli(
                "submit",
                str(project_zip),
                "--blend",
                "scene.blend",
                "--frame",
                "1",
                "--tiles",
                "2",
                "--json",
            ).stdout
        )["id"]
        assert farm.project(pid)["waiting"]

        farm.cli("blender", "upload", str(first), "--password", "test-admin-password")
        done = farm.wait_state(pid, {"done", "error"}, timeout=180)
        assert done["state"] == "done", done
        status = json.loads(farm.cli("blender", "status", "--json").stdout)
        assert status["sha256"] == sha256(first)
        assert status["nodes"]["fresh"] == {
            "version": "3.4.1",
            "sha256": sha256(first),
            "online": True,
        }
        assert "blender-3.4.1-linux-x64/blender" in farm.log("node-fresh")

        farm.cli("blender", "upload", str(second), "--password", "test-admin-password")
        wait_for(
            lambda: (
                json.loads(farm.cli("blender", "status", "--json").stdout)["nodes"]["fresh"][
                    "sha256"
                ]
                == sha256(second)
            ),
            60,
            "the node to switch",
            farm,
        )
        work = farm.root / "work-fresh" / "blender"
        assert [p.name for p in work.iterdir()] == [sha256(second)[:16]]
        pid2 = json.loads(
            farm.cli(
                "submit", str(project_zip), "--blend", "scene.blend", "--frame", "2", "--json"
            ).stdout
        )["id"]
        assert farm.wait_state(pid2, {"done", "error"}, timeout=180)["state"] == "done"
        assert "blender-3.4.1-linux-x86_64/blender" in farm.log("node-fresh")
    finally:
        farm.close()
        shutil.rmtree(tmp_path / "work-fresh", ignore_errors=True)
