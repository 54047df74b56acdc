"""A task never ends the node: each failure is reported against its task and the loop goes on.

The node runs against the real in-process API (tests/apphelpers.py) with Blender faked.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import sqlite3
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apphelpers import InProcessFarm, fake_project_zip
from test_node import FakeRenderer, make_node


def damaged_zip(blend: str) -> bytes:
    """A project zip whose texture member fails its CRC check (one byte of its data flipped)."""
    data = bytearray(fake_project_zip((blend,)))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        member = zf.getinfo("textures/t.png")
    assert member.compress_type == zipfile.ZIP_STORED
    name_len, extra_len = struct.unpack_from("<HH", data, member.header_offset + 26)
    data[member.header_offset + 30 + name_len + extra_len] ^= 0xFF
    return bytes(data)


def submit_damaged(farm: InProcessFarm, tmp_path: Path) -> str:
    """Submit a project whose archive is damaged, however strict the server is at submit.

    A server that reads every member refuses it: then a sound archive is submitted and
    damaged afterwards on the server's disk (with the hash the node checks made to match),
    as a disk going bad under a checked archive would.
    """
    bad = damaged_zip("broken.blend")
    resp = farm.submit({"frame": "1"}, content=bad, filename="broken.zip")
    if resp.status_code < 300:
        return str(resp.json()["id"])
    assert resp.status_code == 400, resp.text
    resp = farm.submit({"frame": "1"}, content=fake_project_zip(("broken.blend",)))
    assert resp.status_code < 300, resp.text
    pid = str(resp.json()["id"])
    archive = farm.farm.data.archive(pid)
    archive.write_bytes(bad)
    with sqlite3.connect(tmp_path / "data" / "blendfarm.db") as db:
        db.execute(
            "UPDATE projects SET sha256 = ?, archive_size = ? WHERE id = ?",
            (hashlib.sha256(bad).hexdigest(), len(bad), pid),
        )
    return pid


def good_project(farm: InProcessFarm) -> str:
    resp = farm.submit({"frame": "1"}, content=fake_project_zip(("good.blend",)))
    assert resp.status_code < 300, resp.text
    return str(resp.json()["id"])


def project(farm: InProcessFarm, pid: str) -> dict[str, Any]:
    return dict(farm.client.get(f"/api/projects/{pid}").json())


def test_a_damaged_project_archive_fails_its_task_and_the_node_renders_the_next(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    broken = submit_damaged(farm, tmp_path)
    good = good_project(farm)
    renderer = FakeRenderer()
    node = make_node(farm, tmp_path, renderer)
    node.run(burst=True)
    failed = project(farm, broken)
    assert failed["state"] == "error"
    # One sentence naming the damaged member (from the node's unpacking, whoever words it).
    assert "damaged" in failed["error"] and "textures/t.png" in failed["error"], failed
    farm.background.composite_all()
    assert project(farm, good)["state"] == "done"
    assert {b.name for b in renderer.blends} == {"good.blend"}
    # Nothing half-unpacked or half-downloaded is left behind.
    work = tmp_path / "n1"
    assert not list((work / "downloads").iterdir())
    assert [p.name for p in (work / "projects").iterdir()] == [p.name for p in node_cache(work)]


def node_cache(work: Path) -> list[Path]:
    return [p for p in (work / "projects").iterdir() if (p / ".complete").exists()]


class BuggyRenderer(FakeRenderer):
    """A renderer with a bug that shows on one file: an exception nobody expects."""

    def probe(self, blend: Path) -> dict[str, Any]:
        if blend.name == "broken.blend":
            raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")
        return super().probe(blend)


def test_a_bug_in_the_node_is_reported_as_an_internal_error_and_the_node_goes_on(
    farm: InProcessFarm, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    resp = farm.submit({"frame": "1"}, content=fake_project_zip(("broken.blend",)))
    broken = str(resp.json()["id"])
    good = good_project(farm)
    with caplog.at_level(logging.ERROR, logger="blendfarm.node"):
        make_node(farm, tmp_path, BuggyRenderer()).run(burst=True)
    error = project(farm, broken)["error"]
    assert error.startswith("internal error in the node: TypeError: unsupported operand")
    farm.background.composite_all()
    assert project(farm, good)["state"] == "done"
    logged = [r for r in caplog.records if r.name == "blendfarm.node" and r.exc_info]
    assert logged and logged[0].exc_info is not None and logged[0].exc_info[0] is TypeError


def test_a_node_short_of_disk_fails_the_task_with_a_sentence_and_writes_nothing(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = good_project(farm)
    node = make_node(farm, tmp_path, FakeRenderer())
    node.projects.reserve = 1 << 62  # more than any disk has
    node.run(burst=True)
    error = project(farm, pid)["error"]
    assert error.startswith("the node's disk is too full to download the project")
    assert "free in" in error
    assert not list((tmp_path / "n1" / "downloads").iterdir())
    assert not (tmp_path / "n1" / "projects").exists()


@pytest.fixture
def lenient_farm(tmp_path: Path) -> Iterator[InProcessFarm]:
    """A farm that takes archives of any compression ratio."""
    f = InProcessFarm(tmp_path, max_ratio=1e9)
    yield f
    f.client.close()
    f.farm.close()


def test_a_node_checks_its_disk_again_before_unpacking(
    lenient_farm: InProcessFarm, tmp_path: Path
) -> None:
    farm = lenient_farm
    # The archive is small, but what it unpacks to is not: 256 MiB of zeros.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("scene.blend", b"BLENDER-v304" + b"\0" * 64)
        with zf.open("textures/big.png", "w") as member:
            for _ in range(256):
                member.write(bytes(1024**2))
    pid = str(farm.submit({"frame": "1"}, content=buf.getvalue()).json()["id"])
    node = make_node(farm, tmp_path, FakeRenderer())
    # Room for the download (a few hundred KiB), not for the unpack, whatever else the
    # machine writes meanwhile (128 MiB either way).
    node.projects.reserve = shutil.disk_usage(tmp_path).free - 128 * 1024**2
    node.run(burst=True)
    error = project(farm, pid)["error"]
    assert error.startswith("the node's disk is too full to unpack the project"), error
    assert not list((tmp_path / "n1" / "downloads").iterdir())
    assert not list((tmp_path / "n1" / "projects").iterdir())
