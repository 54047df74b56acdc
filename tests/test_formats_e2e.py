"""The scene's output format is the result's format, end to end with real Blender (bpy 5.0).

Each scene is rendered by a real farm (`blendfarm serve` and a `--blender bpy` node) in 2x2
chunks and, for reference, whole by plain bpy writing its own output (`write_still`). The
scenes use AgX with a look and no dither, so a display format must match Blender's own file
bit for bit (JPEG by PSNR: two encoders), and EXR every pass of it.
"""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from blendfarm.exr import read_exr
from blendfarm.frame_files import read_jpeg, read_tiff
from blendfarm.pngio import read_png
from helpers import BPY, FarmProcesses, blender_run, make_project, require_bpy, running_farm

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOOK = {"view": "AgX", "look": "AgX - Punchy", "dither": 0}
SCENES = {
    "png16": {"format": "PNG", "depth": "16", **LOOK},
    "jpeg": {"format": "JPEG", "mode": "RGB", "quality": 90, **LOOK},
    "tiff16": {"format": "TIFF", "depth": "16", **LOOK},
    "exr-half": {"format": "OPEN_EXR", "depth": "16", "codec": "PIZ"},
    "multilayer": {"format": "OPEN_EXR_MULTILAYER", "depth": "32", "passes": 1},
}
SIZE = {"width": 64, "height": 48, "samples": 4}


def direct_render(folder: Path) -> Path:
    """What plain bpy writes for the scene rendered whole, in its own format."""
    stem = folder / "direct"
    script = (
        "import bpy; s = bpy.context.scene; s.frame_set(1); "
        f"s.render.filepath = {str(stem)!r}; bpy.ops.render.render(write_still=True)"
    )
    proc = subprocess.run(
        blender_run(BPY, folder / "scene.blend", None, script),
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = sorted(folder.glob("direct.*"))
    assert proc.returncode == 0 and found, proc.stdout[-2000:] + proc.stderr[-2000:]
    return found[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FarmProcesses, dict]]:
    """Every scene rendered by one farm: (the farm, {name: (project, result file, direct)})."""
    require_bpy()
    root = tmp_path_factory.mktemp("formats-e2e")
    folders = {}
    for name, options in SCENES.items():
        folders[name] = make_project(BPY, root / name, **SIZE, **options).parent
    anim = make_project(
        BPY, root / "anim", **SIZE, start=1, end=3, format="OPEN_EXR", depth="16"
    ).parent
    (root / "farm").mkdir()
    with running_farm(root / "farm") as farm:
        farm.start_node("n1", "--blender", "bpy")
        pids = {name: farm.submit(folder, "--frame", "1", "--tiles", "2")
                for name, folder in folders.items()}  # fmt: skip
        pids["anim"] = farm.submit(anim, "--frames", "1-3", "--tiles", "2")
        directs = {name: direct_render(folder) for name, folder in folders.items()}
        done = {}
        for name, pid in pids.items():
            project = farm.wait_state(pid, {"done", "error"}, timeout=600)
            assert project["state"] == "done", project
            out = root / "downloads" / name
            farm.cli("fetch", pid, "-o", str(out))
            done[name] = (project, next(out.iterdir()), directs.get(name))
        yield farm, done


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_a_16_bit_png_with_a_look_equals_blenders_own(finished) -> None:
    _farm, done = finished
    project, result, direct = done["png16"]
    assert result.suffix == ".png" and project["output_format"] == "PNG 16-bit"
    got, want = read_png(result), read_png(direct)
    assert got.dtype == want.dtype == np.uint16
    assert np.array_equal(got, want)


def test_a_jpeg_still_is_a_jpeg_as_close_as_blenders_own(finished) -> None:
    _farm, done = finished
    project, result, direct = done["jpeg"]
    assert result.suffix == ".jpg" and project["result_type"] == "image/jpeg"
    got, want = read_jpeg(result), read_jpeg(direct)
    assert got.shape == want.shape
    assert psnr(got, want) > 35


def test_a_16_bit_tiff_with_a_look_equals_blenders_own(finished) -> None:
    _farm, done = finished
    project, result, direct = done["tiff16"]
    assert result.suffix == ".tif" and project["result_type"] == "image/tiff"
    got, want = read_tiff(result), read_tiff(direct)
    assert got.dtype == want.dtype == np.uint16
    assert np.array_equal(got, want)


def assert_same_exr(result: Path, direct: Path) -> None:
    got, want = read_exr(result), read_exr(direct)
    assert (got.width, got.height) == (want.width, want.height)
    assert got.parts == want.parts  # every part, channel and type
    for mine, theirs in zip(got.pixels, want.pixels, strict=True):
        for channel, values in theirs.items():
            assert np.array_equal(mine[channel], values, equal_nan=True), channel


def test_an_openexr_half_still_keeps_blenders_linear_pixels(finished) -> None:
    _farm, done = finished
    project, result, direct = done["exr-half"]
    assert result.suffix == ".exr" and project["output_format"] == "OpenEXR half"
    assert read_exr(result).parts[0].channels[0][1] == "<f2"
    assert_same_exr(result, direct)


def test_a_multilayer_exr_still_stitches_every_pass_bit_exact(finished) -> None:
    _farm, done = finished
    _project, result, direct = done["multilayer"]
    passes = {part.name for part in read_exr(result).parts}
    assert {"ViewLayer.Combined", "ViewLayer.Depth", "ViewLayer.Denoising Albedo"} <= passes
    assert_same_exr(result, direct)


def test_an_exr_animation_gives_the_mp4_and_its_frames_in_exr(finished, tmp_path: Path) -> None:
    farm, done = finished
    project, video, _ = done["anim"]
    assert video.suffix == ".mp4" and project["frames_url"]
    frames, _secs = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == 3
    farm.cli("fetch", project["id"], "--frames", "-o", str(tmp_path))
    (zipped,) = tmp_path.iterdir()
    with zipfile.ZipFile(zipped) as zf:
        names = sorted(zf.namelist())
        zf.extractall(tmp_path / "frames")
    assert [n.rsplit("-", 1)[1] for n in names] == ["0001.exr", "0002.exr", "0003.exr"]
    first = read_exr(tmp_path / "frames" / names[0])
    assert (first.width, first.height) == (64, 48)
    one = farm.client.get(f"/api/projects/{project['id']}/frames/2")
    assert one.status_code == 200 and one.headers["content-type"] == "image/x-exr"
