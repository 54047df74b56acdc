"""Packing a .blend with its dependencies (blendfarm.packing, over blender-asset-tracer).

Scenes come from make_scene.py with real Blender: a project in shots/ whose texture is in
shots/textures/ and whose linked library is outside its folder, in assets/. A pack is checked
by unpacking it somewhere else, with the sources moved away, and rendering it: the image must
equal a render of the original (within 2/255) and show the linked cube.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blendfarm.archive import choose_blend, inspect_zip, safe_extract
from blendfarm.errors import BadInput
from blendfarm.packing import PackReport, pack_blend, plan_blend
from helpers import require_blender

HERE = Path(__file__).parent
COMPLAINT = re.compile(r"missing|cannot (open|find)|unable to open|not found", re.IGNORECASE)
EXPECTED = ["assets/lib.blend", "shots/scene.blend", "shots/textures/checker.png"]


def run_blender(*args: str) -> str:
    proc = subprocess.run(
        [require_blender(), "-b", "--factory-startup", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    return log


def render(blend: Path, out_dir: Path) -> np.ndarray:
    """Frame 1 of `blend` as an int array; fails on any line where Blender misses a file."""
    log = run_blender(str(blend), "-o", str(out_dir / "frame_#"), "-f", "1")
    complaints = [ln for ln in log.splitlines() if COMPLAINT.search(ln)]
    assert not complaints, "\n".join(complaints)
    return np.asarray(Image.open(out_dir / "frame_1.png")).astype(int)


def cube_pixels(img: np.ndarray) -> int:
    """Pixels of the linked red cube (nothing else in the scene is that red)."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r > 150) & (r - b > 80) & (r - g > 50)).sum())


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    make = str(HERE / "make_scene.py")
    lib = root / "assets" / "lib.blend"
    run_blender("--python", make, "--", "library", str(lib))
    run_blender(
        "--python", make, "--", "project", str(root / "shots" / "scene.blend"),
        f"library={lib}", "width=41", "height=31", "samples=2",
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def reference(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    img = render(scenes / "shots" / "scene.blend", tmp_path_factory.mktemp("reference"))
    assert cube_pixels(img) > 20, "the original render does not show the linked cube"
    return img


def copy_project(scenes: Path, dest: Path) -> Path:
    shutil.copytree(scenes, dest)
    return dest


def unpack_and_render(zip_path: Path, report: PackReport, sources: Path, tmp: Path) -> np.ndarray:
    """Unpack as the server does (after its checks), with the sources moved away, and render."""
    summary = inspect_zip(zip_path, max_unpacked=1 << 30, max_ratio=1000)
    assert sorted(summary.names) == report.files
    assert choose_blend(summary, report.blend) == report.blend
    sources.rename(sources.with_name(sources.name + "-moved"))
    unpacked = tmp / "unpacked"
    safe_extract(zip_path, unpacked, max_unpacked=1 << 30)
    return render(unpacked / report.blend, tmp)


def test_pack_renders_like_the_original(scenes: Path, reference: np.ndarray, tmp_path: Path):
    src = copy_project(scenes, tmp_path / "src")
    sizes: list[int] = []
    zip_path = tmp_path / "pack.zip"
    report = pack_blend(src / "shots" / "scene.blend", zip_path, sizes.append)

    assert report.blend == "shots/scene.blend"
    assert report.files == EXPECTED
    assert report.missing == []
    with zipfile.ZipFile(zip_path) as zf:
        assert sum(sizes) == report.size == sum(i.file_size for i in zf.infolist())
    assert not list(tmp_path.glob(".*.part")), "the temporary zip was left behind"

    img = unpack_and_render(zip_path, report, src, tmp_path)
    assert img.shape == reference.shape
    assert np.abs(img - reference).max() <= 2
    assert cube_pixels(img) > 20


def test_absolute_paths_are_rewritten(scenes: Path, reference: np.ndarray, tmp_path: Path):
    src = copy_project(scenes, tmp_path / "src")
    blend = tmp_path / "abs" / "scene.blend"
    blend.parent.mkdir()
    run_blender(
        str(src / "shots" / "scene.blend"), "--python-expr",
        "import bpy\n"
        "for d in (*bpy.data.images, *bpy.data.libraries):\n"
        "    if d.filepath: d.filepath = bpy.path.abspath(d.filepath)\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r}, relative_remap=False)\n",
    )  # fmt: skip
    zip_path = tmp_path / "pack.zip"
    report = pack_blend(blend, zip_path)

    assert report.blend == "abs/scene.blend"
    assert report.missing == []
    outside = [f for f in report.files if f.startswith("_outside_project/")]
    assert sorted(Path(f).name for f in outside) == ["checker.png", "lib.blend"]
    assert plan_blend(blend).files == report.files

    blend.parent.rename(tmp_path / "abs-moved")
    img = unpack_and_render(zip_path, report, src, tmp_path)
    assert np.abs(img - reference).max() <= 2
    assert cube_pixels(img) > 20


def test_missing_texture_is_reported(scenes: Path, tmp_path: Path):
    src = copy_project(scenes, tmp_path / "src")
    texture = src / "shots" / "textures" / "checker.png"
    texture.unlink()
    blend = src / "shots" / "scene.blend"

    plan = plan_blend(blend)
    report = pack_blend(blend, tmp_path / "pack.zip")
    for r in (plan, report):
        assert r.missing == [str(texture)]
        assert r.files == ["assets/lib.blend", "shots/scene.blend"]


def test_missing_library_is_reported(scenes: Path, tmp_path: Path):
    src = copy_project(scenes, tmp_path / "src")
    (src / "assets" / "lib.blend").unlink()
    report = plan_blend(src / "shots" / "scene.blend")
    assert report.missing == [str(src / "assets" / "lib.blend")]
    # The pack's root is the deepest folder holding what exists: here the .blend's own.
    assert report.blend == "scene.blend"
    assert report.files == ["scene.blend", "textures/checker.png"]


def test_plan_lists_what_pack_writes(scenes: Path, tmp_path: Path):
    src = copy_project(scenes, tmp_path / "src")
    before = sorted(src.rglob("*"))
    plan = plan_blend(src / "shots" / "scene.blend")
    assert sorted(src.rglob("*")) == before, "the plan wrote something"
    assert list(tmp_path.iterdir()) == [src]

    report = pack_blend(src / "shots" / "scene.blend", tmp_path / "pack.zip")
    assert plan == report
    assert plan.files == EXPECTED


def test_compressed_blend(scenes: Path, tmp_path: Path):
    """Blender ≥ 3.0 compresses with zstd: BAT reads that only with the zstandard module."""
    src = copy_project(scenes, tmp_path / "src")
    blend = src / "shots" / "packed.blend"
    run_blender(
        str(src / "shots" / "scene.blend"), "--python-expr",
        f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r}, compress=True)",
    )  # fmt: skip
    assert blend.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(BadInput, match="packed.blend.*zstandard"):
            plan_blend(blend)
        return
    report = pack_blend(blend, tmp_path / "pack.zip")
    assert report.files == ["assets/lib.blend", "shots/packed.blend", "shots/textures/checker.png"]


def test_unwritable_zip_is_bad_input(scenes: Path, tmp_path: Path):
    out = tmp_path / "no" / "such" / "dir" / "pack.zip"
    with pytest.raises(BadInput, match="^cannot write pack.zip: "):
        pack_blend(scenes / "shots" / "scene.blend", out)
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("scene.blend", b"just some text\n", "scene.blend is not a .blend file"),
        ("picture.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "picture.png is not a .blend file"),
        ("scene.blend1", b"BLENDER-v304" + bytes(64), "scene.blend1 is not a .blend file"),
        ("broken.blend", b"BLENDER-v304" + bytes(64), "cannot read broken.blend: "),
        ("gone.blend", None, "gone.blend does not exist"),
        ("folder.blend", "dir", "folder.blend is not a .blend file"),
    ],
)
def test_not_a_blend_is_bad_input(tmp_path: Path, name: str, content: object, message: str):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    out = tmp_path / "out" / "pack.zip"
    out.parent.mkdir()
    for call in (lambda: plan_blend(path), lambda: pack_blend(path, out)):
        with pytest.raises(BadInput) as info:
            call()
        text = str(info.value)
        assert text.startswith(message) and "\n" not in text
    assert list(out.parent.iterdir()) == []
