"""Raw chunks and finish tasks end to end, through real `blendfarm serve` and `node`
processes and real Blender: a denoised, composited still in 3x3 chunks is as close to a
direct render as that render is to itself under another seed, and shows no seam."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from blendfarm.pngio import read_png
from blendfarm.tiles import chunk_rect
from helpers import FarmProcesses, blender_run, require_blender, require_bpy, zip_folder

HERE = Path(__file__).resolve().parent
SCENE = HERE / "make_finish_scene.py"
W, H, TILES = 101, 77, 3  # an odd size: chunks of unequal widths and heights


def make_scene(blender: str, out: Path, **opts: object) -> Path:
    args = [f"{k}={v}" for k, v in opts.items()]
    proc = subprocess.run(
        blender_run(blender, None, SCENE, "", str(out), *args),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def render_whole(blender: str, blend: Path, out: Path, seed: int | None = None) -> np.ndarray:
    """A direct render of the whole frame (denoised and composited by Blender), as floats."""
    change = f"s.cycles.seed = {seed}; " if seed is not None else ""
    script = (
        f"import bpy; s = bpy.context.scene; {change}bpy.ops.render.render(); "
        f"bpy.data.images['Render Result'].save_render(filepath={str(out)!r}, scene=s)"
    )
    proc = subprocess.run(
        blender_run(blender, blend, None, script), capture_output=True, text=True, timeout=300
    )
    assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    return as_float(read_png(out))


def as_float(img: np.ndarray) -> np.ndarray:
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img[..., :3].astype(np.float64) / scale


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def seam_ratio(a: np.ndarray, b: np.ndarray, tiles: int) -> float:
    """Mean absolute difference on the pixels next to chunk edges over the interior's."""
    h, w = a.shape[:2]
    edge = np.zeros((h, w), dtype=bool)
    for i in range(1, tiles):
        x = chunk_rect(w, h, tiles, 0, i).x0
        y = chunk_rect(w, h, tiles, i, 0).y0
        edge[:, x - 1 : x + 1] = True
        edge[y - 1 : y + 1, :] = True
    diff = np.abs(a - b).mean(axis=2)
    inner = float(diff[~edge].mean())
    return float(diff[edge].mean()) / inner if inner else (0.0 if not diff[edge].any() else 99.0)


def finished_by_the_farm(farm: FarmProcesses, blend: Path, tmp: Path, blender: str) -> Path:
    """Submit `blend` in 3x3 chunks (finish auto, no overscan) to a farm with one node of
    `blender`; the result's path once done."""
    farm.start_node("n1", "--blender", blender)
    pid = farm.submit(zip_folder(blend.parent, tmp / "p.zip"), "--tiles", str(TILES))
    done = farm.wait_state(pid, {"done", "error"}, timeout=600)
    assert done["state"] == "done", (done, farm.logs())
    assert done["finish"] == "auto" and not any("seam" in w for w in done["warnings"])
    out = tmp / "result.png"
    out.write_bytes(farm.client.get(f"/api/projects/{pid}/result").content)
    node_log = farm.log("node-n1")
    assert "raw" in node_log and "finishing" in node_log, node_log
    return out


@pytest.mark.e2e
@pytest.mark.slow
def test_a_denoised_composited_3x3_still_matches_a_direct_render_without_seams(
    live_farm: FarmProcesses, tmp_path: Path
) -> None:
    bpy = require_bpy()
    blend = make_scene(bpy, tmp_path / "project" / "scene.blend", width=W, height=H)
    direct = render_whole(bpy, blend, tmp_path / "direct.png")
    other_seed = render_whole(bpy, blend, tmp_path / "seed.png", seed=99)
    finished = as_float(read_png(finished_by_the_farm(live_farm, blend, tmp_path, bpy)))
    assert finished.shape == direct.shape
    noise, got, seams = (
        psnr(direct, other_seed),
        psnr(direct, finished),
        seam_ratio(finished, direct, TILES),
    )
    print(f"another seed {noise:.1f} dB, finished {got:.1f} dB, seam ratio {seams:.2f}")
    assert got >= noise - 1.0
    assert seams <= 1.5


@pytest.mark.e2e
@pytest.mark.slow
def test_a_composited_3x3_still_is_finished_by_blender_3_without_a_denoiser(
    live_farm: FarmProcesses, tmp_path: Path
) -> None:
    blender = require_blender()
    blend = make_scene(blender, tmp_path / "project" / "scene.blend", width=W, height=H, denoise=0)
    direct = render_whole(blender, blend, tmp_path / "direct.png")
    finished = as_float(read_png(finished_by_the_farm(live_farm, blend, tmp_path, blender)))
    assert psnr(direct, finished) > 60  # the same samples, composited once: (nearly) equal
    assert seam_ratio(finished, direct, TILES) <= 1.5


GRAPH = HERE / "finish_graph_check.py"


def test_the_compositor_reads_the_passes_through_the_scenes_denoiser_and_is_put_back(
    tmp_path: Path,
) -> None:
    bpy = require_bpy()
    blend = make_scene(bpy, tmp_path / "scene.blend", width=31, height=23)
    proc = subprocess.run(
        blender_run(bpy, blend, GRAPH, ""), capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("GRAPH ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(lines[-1][len("GRAPH ") :])
    rewired = got["rewired"]
    assert rewired["render_layers_muted"] and rewired["blur_fed_by"] == "Denoise"
    assert rewired["denoise"] == {
        "Image": "Combined",
        "Albedo": "Denoising Albedo",
        "Normal": "Denoising Normal",
        "Prefilter": "Fast",
        "Quality": "Balanced",
        "HDR": True,
    }
    assert got["after"] == got["before"]  # the warm session's scene is as it was loaded
    assert got["plain"]["output_fed_by"] == "Denoise" and got["plain"]["after"] is None
