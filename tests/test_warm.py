"""Warm across projects: a project's content hash, the lease that prefers what a node has
loaded (within fair share), and a node that keeps its Blender session and unpacked files for
a new project of identical content (a stand-in Blender executable, the real SessionRenderer)."""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from apphelpers import NODE, PROBE, InProcessFarm
from blendfarm.content_hash import content_sha
from blendfarm.errors import BadInput
from blendfarm.node.blender import SessionRenderer
from blendfarm.node.node import Node
from blendfarm.settings import NodeSettings

BLEND = b"BLENDER-v304" + b"\0" * 64


def project_zip(files: dict[str, bytes], when: tuple[int, ...] = (2024, 1, 1, 0, 0, 0)) -> bytes:
    """A zip of `files`, in the order given, every member dated `when`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=when), data)  # type: ignore[arg-type]
    return buf.getvalue()


FILES = {"scene.blend": BLEND, "textures/t.png": b"not really", "other.blend": BLEND + b"x"}
# The same files, zipped in another order on another day: another archive, the same content.
SAME = project_zip(dict(reversed(FILES.items())), when=(2025, 6, 1, 12, 0, 0))


def sha_of(data: bytes, tmp_path: Path, blend: str = "scene.blend") -> str:
    path = tmp_path / "hashed.zip"
    path.write_bytes(data)
    return content_sha(path, blend)


def test_the_content_hash_is_the_files_and_the_blend_not_the_zip(tmp_path: Path) -> None:
    first = sha_of(project_zip(FILES), tmp_path)
    assert project_zip(FILES) != SAME
    assert sha_of(SAME, tmp_path) == first
    assert sha_of(project_zip(FILES), tmp_path, "other.blend") != first  # another .blend
    changed = dict(FILES, **{"textures/t.png": b"not really!"})
    assert sha_of(project_zip(changed), tmp_path) != first  # one file changed
    renamed = {"scene.blend": BLEND, "textures/u.png": b"not really", "other.blend": BLEND + b"x"}
    assert sha_of(project_zip(renamed), tmp_path) != first  # one file renamed


def test_a_damaged_member_is_refused_in_one_sentence(tmp_path: Path) -> None:
    data = bytearray(project_zip({"scene.blend": BLEND * 50}))
    at = data.index(b"scene.blend") + len("scene.blend") + 5  # inside the deflated bytes
    data[at] ^= 0xFF
    with pytest.raises(BadInput, match="damaged"):
        sha_of(bytes(data), tmp_path)


# -- the lease --------------------------------------------------------------------------------


def lease(farm: InProcessFarm, node: str, warm: str = "") -> dict[str, Any] | None:
    params = {"warm": warm} if warm else {}
    resp = farm.client.post(f"/api/nodes/{node}/lease", headers=NODE, params=params)
    assert resp.status_code in (200, 204), resp.text
    return resp.json() if resp.status_code == 200 else None


def ready(farm: InProcessFarm) -> None:
    """Every project's probe done (where there is one) and every chunk back in the queue."""
    held = []
    while (task := farm.lease("prober")) is not None:
        if task["kind"] == "probe":
            assert farm.answer(task).status_code == 200
        else:
            held.append(task)
    for task in held:
        params = {"lease": task["lease"]}
        farm.client.post(f"/api/tasks/{task['id']}/release", headers=NODE, params=params)


def test_the_lease_prefers_the_loaded_content_within_fair_share(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    other = project_zip({"scene.blend": BLEND + b"another scene"})
    old = farm.submit({"frames": "1-4"}, content=other).json()["id"]
    warm_pid = farm.submit({"frames": "1-4", "blend": "scene.blend"}, content=SAME).json()["id"]
    ready(farm)
    warm = sha_of(SAME, tmp_path)
    first = lease(farm, "x", warm)
    assert first is not None and first["project"] == warm_pid  # a tie: the loaded content
    assert first["content_sha"] == warm
    assert lease(farm, "y")["project"] == old  # type: ignore[index]  # a cold node: fair share
    assert lease(farm, "z", warm)["project"] == warm_pid  # type: ignore[index]  # 1 and 1
    assert lease(farm, "w", warm)["project"] == warm_pid  # type: ignore[index]  # 2 and 1
    # It renders three, the other project one: fair share goes first, loaded or not.
    assert lease(farm, "v", warm)["project"] == old  # type: ignore[index]


def test_a_lease_refuses_a_warm_value_that_is_no_hash(farm: InProcessFarm) -> None:
    resp = farm.client.post("/api/nodes/n1/lease", headers=NODE, params={"warm": "../x"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_input"


# -- the node ---------------------------------------------------------------------------------

FAKE_BLENDER = """#!{python}
# Stands in for Blender: speaks the session protocol; writes one line per start to the log.
import json, sys
from pathlib import Path
import numpy as np
from blendfarm.pngio import write_png
from blendfarm.tiles import Border, border_pixels

blend = sys.argv[sys.argv.index("--disable-autoexec") + 1]
with open({log!r}, "a") as log:
    log.write(json.dumps({{"start": blend}}) + "\\n")
PROBE = {probe!r}
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "quit":
        print("@@BLENDFARM@@" + json.dumps({{"ok": True}}), flush=True)
        break
    if cmd["op"] == "probe":
        print("@@BLENDFARM@@" + json.dumps({{"ok": True, "probe": PROBE}}), flush=True)
        continue
    w, h = PROBE["resolution_x"], PROBE["resolution_y"]
    rect = border_pixels(Border(*cmd["border"]), w, h) if cmd["border"] else None
    size = (rect.height, rect.width, 3) if rect else (h, w, 3)
    write_png(Path(cmd["output"]), np.full(size, cmd["frame"], np.uint8))
    print("@@BLENDFARM@@" + json.dumps({{"ok": True, "output": cmd["output"]}}), flush=True)
"""


def test_a_node_keeps_its_session_for_a_new_project_with_identical_content(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    log = tmp_path / "starts.log"
    fake = tmp_path / "blender"
    fake.write_text(FAKE_BLENDER.format(python=sys.executable, log=str(log), probe=PROBE))
    fake.chmod(0o755)
    first = farm.submit(
        {"frames": "1-2", "tiles": "2", "blend": "scene.blend"}, content=project_zip(FILES)
    ).json()
    again = farm.submit(
        {"frames": "1-2", "tiles": "2", "blend": "scene.blend"}, content=SAME
    ).json()
    assert first["id"] != again["id"]
    said: list[str] = []
    settings = NodeSettings(
        server="http://testserver", name="n1", work_dir=tmp_path / "n1", token="tok-123"
    )
    node = Node(
        settings,
        http=farm.client,
        renderers=lambda _slot: SessionRenderer(str(fake), lambda _line: None),
        say=said.append,
    )
    assert node.run(burst=True) >= 16  # both projects' chunks (and probes, if any)
    farm.background.composite_all()
    for pid in (first["id"], again["id"]):
        assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"
    starts = [json.loads(line)["start"] for line in log.read_text().splitlines()]
    assert len(starts) == 1, starts  # one Blender for both projects
    assert sum("downloaded" in line for line in said) == 1, said  # one download, one unpack
    assert len(list((tmp_path / "n1" / "projects").iterdir())) == 1


def test_an_uploads_content_hash_comes_from_the_check_that_reads_it(tmp_path: Path) -> None:
    from blendfarm.archive import inspect_zip
    from blendfarm.content_hash import content_sha, content_sha_of

    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("b/scene.blend", b"BLENDER-v304" + bytes(64))
        zf.writestr("a/tex.png", b"pixels")
        zf.writestr("empty/", b"")
    digests: list[tuple[str, str]] = []
    inspect_zip(path, 1 << 20, 100.0, digests=digests)
    assert sorted(name for name, _ in digests) == ["a/tex.png", "b/scene.blend"]
    assert content_sha_of(digests, "b/scene.blend") == content_sha(path, "b/scene.blend")
