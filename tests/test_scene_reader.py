"""The server reads a .blend's active scene without Blender, and agrees with real Blender.

Each scene is made by real Blender (Debian's 3.4 and the bpy module 5.0, compressed and
not) and probed by the node's own Blender session; what the server reads must be what the
probe reports, and the plan made from either must be the same.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from blendfarm.node.blender import BlenderSession
from blendfarm.server.scene_reader import SceneFacts, read_scene, read_scene_in_zip
from blendfarm.server.validate import plan_from_probe
from helpers import blender_run, make_project, make_scene, require_bpy

FIELDS = (
    "resolution_x",
    "resolution_y",
    "resolution_percentage",
    "frame_start",
    "frame_end",
    "fps",
    "fps_base",
    "camera",
)
SUBMITTED = {"frame_start": None, "frame_end": None, "animation": True, "tiles": 2, "overscan": 0}

# (Blender, options of tests/make_scene.py)
CASES = [
    ("blender", {"width": 203, "height": 157, "percent": 100, "start": 1, "end": 4}),
    ("blender", {"width": 640, "height": 361, "percent": 33, "start": -3, "end": 12, "fps": 25}),
    (
        "blender",
        {"width": 1001, "height": 99, "percent": 150, "start": 7, "end": 7, "compress": 1},
    ),
    ("bpy", {"width": 320, "height": 241, "percent": 50, "fps": 30, "fps_base": 1.001}),
    ("bpy", {"width": 99, "height": 77, "percent": 77, "start": 2, "end": 9, "compress": 0}),
    ("bpy", {"width": 1920, "height": 1080, "percent": 10, "step": 3, "fps": 60, "end": 250}),
]


def which(kind: str, blender: str) -> str:
    return require_bpy() if kind == "bpy" else blender


def probe(executable: str, blend: Path) -> dict[str, Any]:
    """What the node's probe reports, from a real Blender session."""
    lines: list[str] = []
    session = BlenderSession(executable, blend, lines.append)
    try:
        found: dict[str, Any] = session.ask({"op": "probe"}, 180)["probe"]
    finally:
        session.close()
    return found


@pytest.mark.e2e
@pytest.mark.parametrize(("kind", "options"), CASES, ids=lambda c: str(c))
def test_the_server_reads_what_blender_probes(
    kind: str, options: dict[str, object], blender: str, tmp_path: Path
) -> None:
    executable = which(kind, blender)
    blend = make_project(executable, tmp_path / "p", **options)
    compress = options.get("compress")
    magic = blend.read_bytes()[:4]
    if compress == 1:
        assert magic[:2] == b"\x1f\x8b" or magic == b"\x28\xb5\x2f\xfd"
    elif compress == 0:
        assert magic == b"BLEN"

    facts = read_scene(blend)
    assert facts is not None
    probed = probe(executable, blend)
    read = facts.as_probe()
    assert {k: read[k] for k in FIELDS} == {k: probed[k] for k in FIELDS}
    assert facts.engine == probed["engine"] == "CYCLES"
    assert facts.frame_step == options.get("step", 1)
    assert plan_from_probe(SUBMITTED, read) == plan_from_probe(SUBMITTED, probed)


@pytest.mark.e2e
def test_the_scene_is_read_from_a_zip_member_and_the_scratch_file_is_removed(
    blender: str, tmp_path: Path
) -> None:
    blend = make_project(blender, tmp_path / "p", width=64, height=48, compress=1)
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(blend, "shots/scene.blend")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    facts = read_scene_in_zip(archive, "shots/scene.blend", scratch)
    assert facts is not None and (facts.resolution_x, facts.resolution_y) == (64, 48)
    assert read_scene_in_zip(archive, "shots/scene.blend", scratch, limit=1000) is None
    assert read_scene_in_zip(archive, "not/there.blend", scratch) is None
    assert not list(scratch.iterdir())


# -- what it leaves to the probe --------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_blend(blender: str, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("plain")
    return make_project(blender, folder, width=50, height=40, compress=0).read_bytes()


def written(tmp_path: Path, data: bytes, name: str = "x.blend") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def first_block_after_header(data: bytes) -> int:
    """Offset of the `len` field of the first block of a plain 3.4 file (8-byte pointers)."""
    assert data[:12] == b"BLENDER-v304"
    return 12 + 4


@pytest.mark.e2e
def test_a_file_without_a_camera_is_left_to_the_probe(blender: str, tmp_path: Path) -> None:
    blend = make_project(blender, tmp_path / "p", broken=1)
    assert read_scene(blend) is None


@pytest.mark.e2e
def test_a_file_that_runs_python_on_load_is_left_to_the_probe(blender: str, tmp_path: Path) -> None:
    out, markers = tmp_path / "scripted.blend", tmp_path / "markers"
    markers.mkdir()
    script = Path(__file__).parent / "make_scripted_scene.py"
    cmd = blender_run(blender, None, script, "", str(out), str(markers))
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    assert read_scene(out) is None
    assert not list(markers.iterdir())  # reading it ran nothing


@pytest.mark.e2e
def test_damaged_or_hostile_files_read_as_nothing(plain_blend: bytes, tmp_path: Path) -> None:
    at = first_block_after_header(plain_blend)
    negative = plain_blend[:at] + struct.pack("<i", -24) + plain_blend[at + 4 :]
    huge = plain_blend[:at] + struct.pack("<i", 2**31 - 1) + plain_blend[at + 4 :]
    dna = plain_blend.find(b"SDNANAME")
    many_names = plain_blend[: dna + 8] + struct.pack("<I", 2**31) + plain_blend[dna + 12 :]
    bomb = gzip.compress(b"BLENDER-v304" + b"\0" * (4 * 1024 * 1024))
    for data in (
        b"",
        b"BLENDER",
        b"BLENDER-v304",
        plain_blend[: len(plain_blend) // 2],
        plain_blend[:at] + b"\xff" * 64,
        negative,
        huge,
        many_names,
        gzip.compress(plain_blend)[:-100],
        b"\x28\xb5\x2f\xfd" + b"not zstd at all",
        b"not a blend file at all",
    ):
        assert read_scene(written(tmp_path, data)) is None
    assert read_scene(written(tmp_path, bomb), limit=1024 * 1024) is None
    assert list(tmp_path.iterdir()) == [tmp_path / "x.blend"]  # no scratch file left


@pytest.mark.e2e
def test_of_two_scenes_the_reader_never_picks_another_than_blender(
    blender: str, tmp_path: Path
) -> None:
    """A file with two scenes, saved showing the second: what the server reads, if anything,
    is the scene Blender opens (it may leave the file to the probe)."""
    make_scene(blender, "library", tmp_path / "lib" / "lib.blend")
    blend = make_scene(blender, "project", tmp_path / "a.blend", width=300, height=200)
    two = tmp_path / "two.blend"
    expr = (
        "import bpy; old = bpy.context.scene; new = old.copy(); new.name = 'Second';"
        " new.render.resolution_x = 123;"
        " [setattr(w, 'scene', new) for w in bpy.context.window_manager.windows];"
        f" bpy.ops.wm.save_as_mainfile(filepath={str(two)!r})"
    )
    subprocess.run(blender_run(blender, blend, None, expr), capture_output=True, check=True)
    facts = read_scene(two)
    probed = probe(blender, two)
    assert facts is None or facts.resolution_x == probed["resolution_x"]


def test_facts_are_named_as_the_probe_names_them() -> None:
    facts = SceneFacts("S", 10, 20, 50, 1, 3, 1, 24, 1.0, True, "CYCLES")
    assert plan_from_probe(SUBMITTED, facts.as_probe()).width == 5
