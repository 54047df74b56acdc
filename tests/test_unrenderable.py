"""Scenes that cannot render anywhere fail at once, in one sentence with the fix.

The probe (blender_script.py in real Blender) checks what stops every render: no active
camera, a linked library that is not there, an engine or a denoiser the node's Blender
lacks, an image of no pixels. `plan_from_probe` turns what it found into the project's
error; Blender's own words stay in the node's log, and our script's frames appear nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from blendfarm.errors import BadInput, BlenderFailed
from blendfarm.node.blender import BlenderSession
from blendfarm.server.validate import plan_from_probe, unrenderable
from helpers import FarmProcesses, make_project

PROBE = {
    "resolution_x": 203,
    "resolution_y": 157,
    "resolution_percentage": 100,
    "frame_start": 1,
    "frame_end": 10,
    "fps": 24,
    "fps_base": 1,
    "blender_version": "3.4.1",
}
PROJECT = {"frame_start": None, "frame_end": None, "animation": True, "tiles": 2, "overscan": 0}

NO_CAMERA = "the scene has no active camera: set one in Scene Properties › Camera"


# -- the sentences (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("found", "sentence"),
    [
        ({"camera": False}, NO_CAMERA),
        (
            {"missing_libraries": ["//lib/props.blend", "//lib/set.blend"]},
            "the scene links a library that is not in the project (//lib/props.blend and 1"
            " more): submit the .blend itself so blendfarm packs its libraries, or put the"
            " library in the zip at that path relative to the .blend",
        ),
        (
            {"engine": "LUXCORE", "engine_available": False},
            "the scene renders with LUXCORE, which the node's Blender 3.4.1 does not have:"
            " enable that engine's add-on on every node, or choose another engine in Render"
            " Properties",
        ),
        (
            {"denoising": True, "denoiser_available": False},
            "the scene is denoised with OpenImageDenoise, which the node's Blender 3.4.1 is"
            ' built without (Blender says "Build without OpenImageDenoiser"): turn Denoise off'
            " in Render Properties › Sampling, or give the farm an official Blender with"
            " `blendfarm blender upload`",
        ),
        (
            {"resolution_x": 50, "resolution_y": 40, "resolution_percentage": 1},
            "the scene renders an empty image (0x0): raise its resolution or its resolution %"
            " in Output Properties › Format",
        ),
    ],
)
def test_a_scene_that_cannot_render_is_refused_in_one_sentence_with_its_fix(
    found: dict[str, object], sentence: str
) -> None:
    with pytest.raises(BadInput) as caught:
        plan_from_probe(PROJECT, {**PROBE, **found})
    assert caught.value.message == sentence
    assert "\n" not in sentence and sentence.count(": ") == 1


def test_the_empty_image_is_refused_at_zero_pixels_only() -> None:
    probe = {**PROBE, "resolution_x": 4, "resolution_y": 4, "resolution_percentage": 1}
    with pytest.raises(BadInput, match=r"empty image \(0x0\)"):
        plan_from_probe({**PROJECT, "tiles": 1}, probe)
    assert plan_from_probe({**PROJECT, "tiles": 1}, {**PROBE, "resolution_x": 4}).width == 4


def test_a_probe_from_a_node_that_does_not_check_plans_as_before() -> None:
    assert unrenderable(PROBE) is None
    assert unrenderable({**PROBE, "camera": True, "engine_available": True}) is None
    plan = plan_from_probe(PROJECT, {**PROBE, "camera": None, "denoiser_available": None})
    assert plan.frames == list(range(1, 11))


def test_a_missing_library_is_the_error_not_also_a_warning() -> None:
    probe = {**PROBE, "missing": ["//tex/wood.png", "//lib/a.blend"]}
    plan = plan_from_probe(PROJECT, probe)
    assert plan.warnings == ["files the scene needs are missing: //tex/wood.png, //lib/a.blend"]
    probe["missing_libraries"] = ["//lib/a.blend"]
    with pytest.raises(BadInput, match="links a library"):
        plan_from_probe(PROJECT, probe)


def test_names_from_a_node_are_kept_short_and_on_one_line() -> None:
    reason = unrenderable({**PROBE, "engine": "X\n" * 500, "engine_available": False})
    assert reason is not None and "\n" not in reason and len(reason) < 300


# -- real Blender reads the scenes --------------------------------------------------------


@pytest.fixture(scope="module")
def scenes(blender: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small scenes, each with one thing that stops every render (and one that renders)."""
    root = tmp_path_factory.mktemp("unrenderable")
    small = {"width": 41, "height": 31, "end": 1}
    made = {
        "fine": make_project(blender, root / "fine", **small),
        "no_camera": make_project(blender, root / "no_camera", broken=1, **small),
        "engine": make_project(blender, root / "engine", engine="FANCY_ENGINE", **small),
        "library": make_project(blender, root / "library", **small),
        "empty": make_project(blender, root / "empty", percent=1, **small),
        "denoise": make_project(blender, root / "denoise", denoise=1, **small),
    }
    (root / "library" / "lib" / "lib.blend").unlink()
    return made


@pytest.fixture
def session(blender: str, scenes: dict[str, Path]) -> Iterator[dict[str, object]]:
    """Opens scenes in the node's own Blender session, as a node probes them."""
    opened: list[BlenderSession] = []
    logs: dict[str, list[str]] = {}

    def open_scene(name: str) -> BlenderSession:
        logs[name] = []
        s = BlenderSession(blender, scenes[name], logs[name].append)
        opened.append(s)
        return s

    yield {"open": open_scene, "logs": logs}
    for s in opened:
        s.close()


def probe_of(session: dict[str, object], name: str) -> dict[str, object]:
    opened = session["open"](name)  # type: ignore[operator]
    result: dict[str, object] = opened.ask({"op": "probe"}, 120)["probe"]
    return result


@pytest.mark.e2e
def test_the_probe_finds_what_stops_every_render(session: dict[str, object]) -> None:
    fine = probe_of(session, "fine")
    assert fine["camera"] is True and fine["engine_available"] is True
    assert fine["engine"] == "CYCLES" and fine["missing_libraries"] == []
    assert fine["denoiser_available"] is None  # not denoised
    assert unrenderable(fine) is None

    assert probe_of(session, "no_camera")["camera"] is False
    engine = probe_of(session, "engine")
    assert (engine["engine"], engine["engine_available"]) == ("FANCY_ENGINE", False)
    library = probe_of(session, "library")
    assert library["missing_libraries"] == ["//lib/lib.blend"]
    empty = probe_of(session, "empty")
    with pytest.raises(BadInput, match="empty image"):
        plan_from_probe(PROJECT, empty)
    denoise = probe_of(session, "denoise")
    assert isinstance(denoise["denoiser_available"], bool)

    logs: dict[str, list[str]] = session["logs"]  # type: ignore[assignment]
    assert "blendfarm probe: scene 'Scene' has no active camera" in logs["no_camera"]
    assert any("FANCY_ENGINE" in line and "not available" in line for line in logs["engine"])


@pytest.mark.e2e
def test_a_render_failure_is_blenders_words_without_our_frames(
    session: dict[str, object], tmp_path: Path
) -> None:
    opened = session["open"]("no_camera")  # type: ignore[operator]
    with pytest.raises(BlenderFailed) as caught:
        opened.ask({"op": "render", "frame": 1, "output": str(tmp_path / "x.png")}, 120)
    assert caught.value.message == "Cannot render, no camera"
    log = "\n".join(caught.value.log)
    assert "RuntimeError: Error: Cannot render, no camera" in log  # Blender's own traceback
    assert "blender_script" not in log
    assert opened.ask({"op": "probe"}, 60)["ok"]  # the session goes on


# -- the farm: error at once, nothing rendered ---------------------------------------------


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmProcesses]:
    farm = FarmProcesses(tmp_path_factory.mktemp("farm"))
    farm.start_server()
    farm.start_node("n1", "--threads", "1")
    try:
        yield farm
    finally:
        farm.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_the_farm_fails_a_camera_less_scene_at_its_probe_and_keeps_blenders_words(
    one_node: FarmProcesses, scenes: dict[str, Path]
) -> None:
    out = one_node.cli("submit", str(scenes["no_camera"]), "--json", "--tiles", "2")
    pid = json.loads(out.stdout)["id"]
    project = one_node.wait_state(pid, {"error", "done"}, timeout=120)
    assert project["state"] == "error"
    assert project["error"] == NO_CAMERA
    assert project["chunks_total"] == 0  # no chunk was ever tried
    log = one_node.client.get("/api/nodes/n1/log").json()["lines"]
    assert any("has no active camera" in line for line in log)
    assert not any("blender_script" in line for line in log)

    status = one_node.cli("status", pid).stdout
    assert "no active camera" in status


@pytest.mark.e2e
@pytest.mark.slow
def test_an_engine_the_node_lacks_fails_the_project_by_name(
    one_node: FarmProcesses, scenes: dict[str, Path]
) -> None:
    out = one_node.cli("submit", str(scenes["engine"]), "--json", "--frame", "1")
    pid = json.loads(out.stdout)["id"]
    project = one_node.wait_state(pid, {"error", "done"}, timeout=120)
    assert project["state"] == "error", project
    assert project["error"].startswith("the scene renders with FANCY_ENGINE, which the node's")
