"""No Python from a submitted .blend runs on a node, even where Blender's preferences allow it.

The tests run the node's real BlenderSession on a scene carrying a registered text block, a
Python driver and a Freestyle style module (tests/make_scripted_scene.py), with a Blender
user config whose preferences auto-run scripts, as many artists' workstations do.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from blendfarm.node.blender import BlenderSession
from blendfarm.server.validate import plan_from_probe
from blendfarm.settings import NodeSettings

HERE = Path(__file__).resolve().parent
BLOCKED = [
    "1 Python driver was not evaluated",
    "1 text block registered to run on load was not run",
    "Freestyle Python style modules were turned off",
]


def run_blender(blender: str, *args: str, config: Path | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(config or "/nonexistent")}
    if config is not None:
        env["BLENDER_USER_CONFIG"] = str(config)
    proc = subprocess.run(
        [blender, "-b", "-noaudio", "--python-exit-code", "1", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def autorun_config(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Blender user config whose preferences auto-run the scripts of the files it opens."""
    config = tmp_path_factory.mktemp("blender-config")
    run_blender(
        blender,
        "--factory-startup",
        "--python-expr",
        "import bpy\n"
        "bpy.context.preferences.filepaths.use_scripts_auto_execute = True\n"
        "bpy.ops.wm.save_userpref()\n",
        config=config,
    )
    assert (config / "userpref.blend").exists()
    return config


@pytest.fixture
def scripted(blender: str, tmp_path: Path) -> tuple[Path, Path]:
    """(a .blend carrying Python of each kind, the folder where each writes its marker)"""
    markers = tmp_path / "markers"
    markers.mkdir()
    blend = tmp_path / "project" / "scene.blend"
    blend.parent.mkdir()
    run_blender(
        blender,
        "--factory-startup",
        "--python",
        str(HERE / "make_scripted_scene.py"),
        "--",
        str(blend),
        str(markers),
    )
    assert blend.exists() and list(markers.iterdir()) == []
    return blend, markers


def probe_and_render(
    blend: Path, config: Path, trust: bool, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict, Path]:
    """What the node's real session says of `blend` and the chunk it renders."""
    monkeypatch.setenv("BLENDER_USER_CONFIG", str(config))
    lines: list[str] = []
    session = BlenderSession("blender", blend, lines.append, trust_scripts=trust)
    output = blend.parent / "chunk.png"
    try:
        probe = session.ask({"op": "probe"}, timeout=120)["probe"]
        session.ask({"op": "render", "frame": 1, "border": None, "output": str(output)}, 120)
    finally:
        session.close()
    assert output.stat().st_size > 0, "\n".join(lines)
    return probe, output


@pytest.mark.slow
def test_the_config_auto_runs_scripts_in_plain_blender(
    blender: str, autorun_config: Path, scripted: tuple[Path, Path]
) -> None:
    """Today's danger, shown: Blender started as it used to be runs the file's text block."""
    blend, markers = scripted
    run_blender(blender, str(blend), config=autorun_config)
    assert (markers / "text").read_text() == "text"


@pytest.mark.slow
def test_a_node_runs_no_python_from_the_file_and_says_what_it_did_not_run(
    blender: str,
    autorun_config: Path,
    scripted: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blend, markers = scripted
    probe, _ = probe_and_render(blend, autorun_config, trust=False, monkeypatch=monkeypatch)
    assert sorted(p.name for p in markers.iterdir()) == []
    assert probe["scripts_blocked"] == BLOCKED


@pytest.mark.slow
def test_a_node_that_trusts_scripts_runs_them_all(
    blender: str,
    autorun_config: Path,
    scripted: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blend, markers = scripted
    probe, _ = probe_and_render(blend, autorun_config, trust=True, monkeypatch=monkeypatch)
    assert sorted(p.name for p in markers.iterdir()) == ["driver", "freestyle", "text"]
    assert probe["scripts_blocked"] == []


@pytest.mark.slow
def test_a_scene_without_python_reports_nothing(
    blender: str, project_dir: Path, autorun_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLENDER_USER_CONFIG", str(autorun_config))
    session = BlenderSession("blender", project_dir / "scene.blend", lambda _line: None)
    try:
        assert session.ask({"op": "probe"}, timeout=120)["probe"]["scripts_blocked"] == []
    finally:
        session.close()


PROBE = {
    "resolution_x": 64,
    "resolution_y": 48,
    "resolution_percentage": 100,
    "frame_start": 1,
    "frame_end": 1,
    "fps": 24,
    "fps_base": 1.0,
}
PROJECT = {"frame_start": None, "frame_end": None, "animation": False, "tiles": 1, "overscan": 0}


def test_the_artist_is_told_what_the_nodes_did_not_run() -> None:
    plan = plan_from_probe(PROJECT, {**PROBE, "scripts_blocked": BLOCKED})
    assert plan.warnings == [
        f"{note} (nodes run no Python from submitted files)" for note in BLOCKED
    ]
    assert plan_from_probe(PROJECT, {**PROBE, "scripts_blocked": []}).warnings == []
    assert plan_from_probe(PROJECT, PROBE).warnings == []  # a probe from an older node


def test_notes_from_a_node_are_bounded() -> None:
    notes = ["x" * 10_000] * 100
    plan = plan_from_probe(PROJECT, {**PROBE, "scripts_blocked": notes})
    assert len(plan.warnings) == 5 and all(len(w) < 300 for w in plan.warnings)
    assert plan_from_probe(PROJECT, {**PROBE, "scripts_blocked": "not a list"}).warnings == []


def test_trusting_scripts_is_the_node_owners_choice() -> None:
    assert NodeSettings().trust_scripts is False
    assert NodeSettings.build({}, env={}).trust_scripts is False
    assert NodeSettings.build({}, env={"BLENDFARM_TRUST_SCRIPTS": "yes"}).trust_scripts is True
    assert NodeSettings.build({"trust_scripts": True}, env={}).trust_scripts is True
