"""Uploads are written and hashed as they stream: what nodes download is byte for byte what
was sent, under the hash the server announces."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from apphelpers import NODE, InProcessFarm
from blendfarm.server.uploads import WRITE_BLOCK


def project_zip(extra: int) -> bytes:
    """A project zip with `extra` incompressible bytes beside its .blend."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("scene.blend", b"BLENDER-v304" + bytes(64))
        zf.writestr("textures/noise.bin", os.urandom(extra))
    return buf.getvalue()


def archive(farm: InProcessFarm, pid: str) -> tuple[bytes, str]:
    resp = farm.client.get(f"/api/projects/{pid}/archive", headers=NODE)
    assert resp.status_code == 200, resp.text
    return resp.content, resp.headers["X-Sha256"]


def test_a_project_larger_than_a_write_block_arrives_whole_under_its_own_hash(
    tmp_path: Path,
) -> None:
    farm = InProcessFarm(tmp_path)
    for size in (10, 2 * WRITE_BLOCK + 12345):  # one small write; blocks written behind
        sent = project_zip(size)
        resp = farm.submit(content=sent)
        assert resp.status_code == 201, resp.text
        got, sha = archive(farm, resp.json()["id"])
        assert got == sent
        assert sha == hashlib.sha256(sent).hexdigest()


def test_a_lone_blend_is_hashed_as_the_archive_made_of_it(tmp_path: Path) -> None:
    farm = InProcessFarm(tmp_path)
    resp = farm.submit(content=b"BLENDER-v304" + bytes(64), filename="shot.blend")
    assert resp.status_code == 201, resp.text
    got, sha = archive(farm, resp.json()["id"])
    assert sha == hashlib.sha256(got).hexdigest()
    assert zipfile.ZipFile(io.BytesIO(got)).namelist() == ["shot.blend"]


def test_a_refused_upload_leaves_no_file_behind(tmp_path: Path) -> None:
    farm = InProcessFarm(tmp_path, max_upload=WRITE_BLOCK)
    resp = farm.submit(content=project_zip(2 * WRITE_BLOCK))
    assert resp.status_code == 413, resp.text
    assert list((tmp_path / "data" / "tmp").iterdir()) == []
