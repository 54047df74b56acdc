"""The whole live_farm with real processes and real Blender: serve, two nodes, submit, fetch, rm."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from blendfarm.pngio import read_png
from helpers import BLENDFARM, FarmProcesses, make_project, render_direct, zip_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def submit(live_farm: FarmProcesses, path: Path, *args: str) -> str:
    out = live_farm.cli("submit", str(path), "--json", *args)
    return str(json.loads(out.stdout)["id"])


def fetch(farm: FarmProcesses, *args: str) -> Path:
    """`blendfarm fetch ARGS`; the path it wrote."""
    return Path(farm.cli("fetch", *args).stdout.strip().splitlines()[-1])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def test_two_nodes_render_tiled_animation_and_still(
    live_farm: FarmProcesses, blender: str, project_dir: Path, project_zip: Path, tmp_path: Path
) -> None:
    live_farm.start_node("alpha")
    live_farm.start_node("beta")
    anim = submit(
        live_farm,
        project_zip,
        "--blend",
        "scene.blend",
        "--frames",
        "1-4",
        "--tiles",
        "2",
        "--title",
        "Moving sphere",
    )
    still = submit(
        live_farm,
        project_zip,
        "--blend",
        "scene.blend",
        "--frame",
        "3",
        "--tiles",
        "3",
        "--overscan",
        "5",
    )
    done = live_farm.wait_state(anim, {"done", "error"})
    assert done["state"] == "done", done
    assert (done["chunks_done"], done["chunks_total"], done["frames_done"]) == (16, 16, 4)
    done = live_farm.wait_state(still, {"done", "error"})
    assert done["state"] == "done", done
    assert (done["width"], done["height"], done["chunks_total"]) == (203, 157, 9)

    nodes = {n["name"]: n for n in live_farm.client.get("/api/nodes").json()}
    assert set(nodes) == {"alpha", "beta"}
    assert sum(n["chunks_done"] for n in nodes.values()) == 16 + 9
    assert all(n["blender_version"] for n in nodes.values())

    listing = json.loads(live_farm.cli("status", "--json").stdout)
    assert {p["id"] for p in listing} == {anim, still}
    for p in listing:
        assert set(p) >= {"id", "title", "state", "chunks_done", "chunks_total", "created", "size"}

    out = tmp_path / "out"
    video = fetch(live_farm, anim, "-o", str(out))
    assert video.suffix == ".mp4" and video.exists()
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    frames = list(reader)
    assert len(frames) == 4
    assert meta["fps"] == pytest.approx(24.0)
    assert meta["size"] == (204, 158)  # padded to even for yuv420p

    image = fetch(live_farm, still, "-o", str(out))
    assert image.suffix == ".png"
    direct = render_direct(blender, project_dir / "scene.blend", 3, tmp_path / "direct.png")
    assert max_diff(read_png(image), read_png(direct)) <= 2

    for pid, count, tiles, frame_range in ((anim, 16, 2, range(1, 5)), (still, 9, 3, [3])):
        raw = fetch(live_farm, pid, "--raw", "-o", str(out))
        with zipfile.ZipFile(raw) as zf:
            names = set(zf.namelist())
        expected = {
            f"{pid}-{f}-{r}-{c}.png"
            for f in frame_range
            for r in range(tiles)
            for c in range(tiles)
        }
        assert len(names) == count and names == expected

    data = live_farm.root / "data" / "projects"
    before = live_farm.client.get("/api/status").json()["disk"]["data"]
    assert (data / anim).exists()
    live_farm.cli("rm", anim, "--yes")
    assert not (data / anim).exists()
    assert live_farm.client.get(f"/api/projects/{anim}").status_code == 404
    after = live_farm.client.get("/api/status").json()["disk"]["data"]
    assert after < before


def test_sixteen_bit_transparent_scaled_frame_stitches_exactly(
    live_farm: FarmProcesses, blender: str, tmp_path: Path
) -> None:
    folder = tmp_path / "deep"
    make_project(
        blender, folder, width=203, height=157, percent=75, depth=16, transparent=1, start=2, end=2
    )
    archive = zip_folder(folder, tmp_path / "deep.zip")
    live_farm.start_node("solo")
    pid = submit(live_farm, archive, "--blend", "scene.blend", "--tiles", "2", "--overscan", "3")
    done = live_farm.wait_state(pid, {"done", "error"})
    assert done["state"] == "done", done
    # The scene's own range (one frame) makes a still; 75 % of 203x157 as Blender rounds it.
    assert (done["animation"], done["frame_start"], done["width"], done["height"]) == (
        False,
        2,
        152,
        117,
    )
    result = live_farm.client.get(f"/api/projects/{pid}/result")
    assert result.headers["content-type"] == "image/png"
    (tmp_path / "r.png").write_bytes(result.content)
    stitched = read_png(tmp_path / "r.png")
    direct = read_png(render_direct(blender, folder / "scene.blend", 2, tmp_path / "d.png"))
    assert stitched.dtype == np.uint16 and stitched.shape == (117, 152, 4)
    assert stitched[:, :, 3].min() < 65535  # transparent film kept its alpha
    assert max_diff(stitched, direct) <= 2 * 257


def test_a_lone_blend_is_packed_with_what_it_uses_and_renders_the_same(
    live_farm: FarmProcesses, blender: str, tmp_path: Path
) -> None:
    from helpers import make_scene

    library = make_scene(blender, "library", tmp_path / "assets" / "lib.blend")
    scene = make_scene(
        blender,
        "project",
        tmp_path / "shots" / "scene.blend",
        library=library,
        width=121,
        height=91,
    )
    live_farm.start_node("packer")
    out = live_farm.cli("submit", str(scene), "--frame", "1", "--tiles", "2", "--json")
    assert "lib.blend" in out.stderr and "checker.png" in out.stderr  # the packed files listed
    pid = json.loads(out.stdout)["id"]
    done = live_farm.wait_state(pid, {"done", "error"})
    assert done["state"] == "done", done
    assert done["warnings"] == []  # nothing missing on the node
    image = fetch(live_farm, pid, "-o", str(tmp_path / "out"))
    direct = render_direct(blender, scene, 1, tmp_path / "direct.png")
    assert max_diff(read_png(image), read_png(direct)) <= 2


def test_serve_with_local_nodes_is_a_whole_farm(tmp_path: Path, project_zip: Path) -> None:
    farm = FarmProcesses(tmp_path, serve_args=("--local-nodes", "1"))
    farm.start_server()
    try:
        pid = json.loads(
            farm.cli(
                "submit", str(project_zip), "--blend", "scene.blend", "--frame", "1", "--json"
            ).stdout
        )["id"]
        assert farm.wait_state(pid, {"done", "error"}, timeout=120)["state"] == "done"
        nodes = farm.client.get("/api/nodes").json()
        assert len(nodes) == 1 and nodes[0]["chunks_done"] == 1
        # `status --watch` follows the server's event stream until Ctrl-C.
        watch = subprocess.Popen(
            [*BLENDFARM, "status", "--watch"],
            env=farm.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=20)
        assert pid in out and "done" in out and "Traceback" not in err
        farm.stop_server()
        assert farm.server is not None and farm.server.returncode == 0
        assert "blendfarm server stopped" in farm.log("serve")
        marker = str(tmp_path / "data" / "local-nodes").encode()
        leftovers = [p for p in Path("/proc").glob("[0-9]*/cmdline") if marker in _read(p)]
        assert leftovers == [], "the local node outlived the server"
    finally:
        farm.close()


def test_a_tiled_scene_with_compositor_nodes_is_flagged(
    live_farm: FarmProcesses, blender: str, tmp_path: Path
) -> None:
    folder = tmp_path / "glare"
    make_project(blender, folder, compositor=1, width=61, height=47, start=1, end=1)
    live_farm.start_node("solo")
    pid = submit(
        live_farm,
        zip_folder(folder, tmp_path / "glare.zip"),
        "--blend",
        "scene.blend",
        "--tiles",
        "2",
        "--finish",
        "never",  # each chunk composited on its own (auto finishes whole frames: no seams)
    )
    done = live_farm.wait_state(pid, {"done", "error"})
    assert done["state"] == "done", done
    assert any("compositor" in w for w in done["warnings"])
    status = live_farm.cli("status", pid)
    assert "compositor" in status.stdout
