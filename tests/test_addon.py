"""The Blender add-on: its zip, how it is installed, the code it runs outside bpy, and the
whole path from `bpy.ops.blendfarm.submit` in a real Blender to a finished project with the
same pixels as the CLI's submission of that file.

The end-to-end tests install the add-on with `blendfarm addon install` into a Blender whose
user folders are temporary (BLENDER_USER_CONFIG / BLENDER_USER_SCRIPTS), so the user's own
Blender is untouched, and run it against a real `blendfarm serve` and `blendfarm node`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from apphelpers import InProcessFarm
from blendfarm import __version__
from blendfarm.addon import MODULE, SOURCES, build_zip, manifest
from blendfarm.addon.blendfarm_blender import bl_info
from blendfarm.addon.blendfarm_blender import farm as addon_farm
from blendfarm.addon.blendfarm_blender.job import SubmitJob
from blendfarm.addon.install import check_command, install_command, is_extension_blender
from blendfarm.cli.main import app
from blendfarm.pngio import read_png
from helpers import BLENDFARM, FarmProcesses, make_project, missing

HERE = Path(__file__).resolve().parent
SCREENSHOT_SCRIPT = HERE / "addon_screenshot.py"
SCREENSHOT = HERE.parent / "docs" / "img" / "addon-panel.png"


# -- the zip and the install commands ------------------------------------------------------


def test_the_zip_is_one_folder_with_the_addon_its_manifest_and_the_command(
    tmp_path: Path,
) -> None:
    command = ["/opt/farm/bin/python", "-m", "blendfarm"]
    built = build_zip(tmp_path / "addon.zip", command)
    with zipfile.ZipFile(built) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(
            f"{MODULE}/{name}" for name in (*SOURCES, "blender_manifest.toml", "settings.json")
        )
        toml = tomllib.loads(zf.read(f"{MODULE}/blender_manifest.toml").decode())
        settings = json.loads(zf.read(f"{MODULE}/settings.json"))
    assert toml["id"] == MODULE and toml["type"] == "add-on"
    assert toml["version"] == __version__
    assert toml["blender_version_min"] == "4.2.0"
    assert len(toml["tagline"]) <= 64 and not toml["tagline"].endswith(".")
    assert set(toml["permissions"]) == {"network", "files"}
    assert settings["command"] == command
    assert ".".join(map(str, bl_info["version"])) == __version__
    assert build_zip(tmp_path / "again.zip", command).read_bytes() == built.read_bytes()
    assert tomllib.loads(manifest("9.9.9"))["version"] == "9.9.9"


@pytest.mark.parametrize(
    ("version", "extension"),
    [("3.4.1", False), ("4.1.1", False), ("4.2.0", True), ("4.5.3", True), ("5.0", True)],
)
def test_blender_4_2_and_later_get_an_extension_older_ones_a_legacy_addon(
    version: str, extension: bool, tmp_path: Path
) -> None:
    zip_path = tmp_path / "a.zip"
    command = install_command("/opt/blender/blender", version, zip_path)
    assert is_extension_blender(version) is extension
    if extension:
        assert command == [
            "/opt/blender/blender",
            "--command",
            "extension",
            "install-file",
            "-r",
            "user_default",
            "-e",
            str(zip_path),
        ]
    else:
        assert command[:2] == ["/opt/blender/blender", "-b"]
        assert "--factory-startup" not in command  # the user's preferences are kept
        assert "addon_enable" in command[command.index("--python-expr") + 1]
        assert command[-2:] == ["--", str(zip_path)]
    assert "--python-exit-code" in check_command("/opt/blender/blender")


# -- the add-on's code outside bpy --------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "arguments"),
    [
        ("", []),
        ("  ", []),
        ("7", ["--frame", "7"]),
        ("1-8", ["--frames", "1-8"]),
        ("-3..2", ["--frames", "-3-2"]),
        ("10:12", ["--frames", "10-12"]),
    ],
)
def test_the_operators_frames_become_the_clis_options(frames: str, arguments: list[str]) -> None:
    assert addon_farm.frames_arguments(frames) == arguments


@pytest.mark.parametrize("frames", ["8-1", "one", "1-2-3", "1.5"])
def test_frames_that_are_no_range_are_refused_in_a_sentence(frames: str) -> None:
    with pytest.raises(addon_farm.FarmError, match="frames"):
        addon_farm.frames_arguments(frames)


def test_the_submit_command_line_carries_every_setting() -> None:
    args = addon_farm.submit_arguments(
        ["blendfarm"], "/p/shot.blend", "farm:2254/", " Shot 3 ", "1-8", 2, 4, 70
    )
    assert args == [
        "blendfarm",
        "addon",
        "submit",
        "/p/shot.blend",
        "--server",
        "http://farm:2254",
        "--title",
        "Shot 3",
        "--frames",
        "1-8",
        "--tiles",
        "2",
        "--overscan",
        "4",
        "--priority",
        "70",
    ]
    with pytest.raises(addon_farm.FarmError, match="not set"):
        addon_farm.submit_arguments([], "/p/shot.blend", "farm")
    with pytest.raises(addon_farm.FarmError, match="not a http"):
        addon_farm.submit_arguments(["blendfarm"], "/p/shot.blend", "ftp://farm")


def test_the_dashboard_is_the_servers_host_on_its_port_unless_set() -> None:
    assert addon_farm.dashboard_url("http://farm.lan:2254") == "http://farm.lan:8080/"
    assert addon_farm.dashboard_url("http://[::1]:2254/") == "http://[::1]:8080/"
    assert addon_farm.dashboard_url("farm:2254", "https://farm.example/ui/") == (
        "https://farm.example/ui/"
    )


def test_the_panel_says_what_the_farm_and_the_project_are_doing() -> None:
    assert addon_farm.nodes_text([]) == "connected, but no node has joined the farm yet"
    assert "none of the 1 known nodes" in addon_farm.nodes_text([{"online": False}])
    text = addon_farm.nodes_text(
        [
            {"name": "a", "online": True, "state": "idle"},
            {"name": "b", "online": True, "state": "rendering"},
        ]
    )
    assert text == "2 nodes online: a (idle), b (rendering)"
    project = {"state": "rendering", "chunks_done": 3, "chunks_total": 12}
    assert addon_farm.project_progress(project) == ("rendering: 3 of 12 chunks", 0.25)
    failed = {"state": "error", "error": "no camera\nBlender's log", "chunks_total": 0}
    assert addon_farm.project_progress(failed) == ("error: no camera", 0.0)
    assert addon_farm.project_progress({"state": "done", "chunks_total": 4})[1] == 1.0


def test_a_failed_submission_ends_with_its_last_words(tmp_path: Path) -> None:
    script = "import sys; print('{\"event\": \"plan\"}'); sys.exit('error: the farm is full')"
    job = SubmitJob([sys.executable, "-c", script], cwd=str(tmp_path))
    events = list(job.follow())
    assert [e["event"] for e in events] == ["plan", "exit"]
    assert events[-1]["code"] == 1 and events[-1]["message"] == "the farm is full"


def test_a_cancelled_submission_says_so(tmp_path: Path) -> None:
    job = SubmitJob([sys.executable, "-c", "import time; time.sleep(60)"], cwd=str(tmp_path))
    job.cancel()
    events = list(job.follow())
    assert events[-1]["message"] == "the upload was cancelled"


def test_a_missing_blendfarm_command_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot run /nonexistent/blendfarm"):
        SubmitJob(["/nonexistent/blendfarm", "addon", "submit"], cwd=str(tmp_path))


# -- `blendfarm addon submit`, the add-on's link to the farm --------------------------------


@pytest.fixture(scope="module")
def scene(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scene.blend (61x47, frames 1-2) in a project folder with lib/lib.blend and a texture."""
    return make_project(blender, tmp_path_factory.mktemp("scene"), width=61, height=47, end=2)


def test_addon_submit_tells_its_progress_as_json_lines(farm: InProcessFarm, scene: Path) -> None:
    runner = CliRunner(env={"BLENDFARM_SERVER": None})
    result = runner.invoke(
        app,
        ["addon", "submit", str(scene), "--title", "Lines", "--frame", "2", "--tiles", "2"],
        obj=farm.client,
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "submitted"
    assert set(kinds[1:-1]) == {"packing", "uploading"}
    assert kinds.index("uploading") > max(i for i, k in enumerate(kinds) if k == "packing")
    plan = events[0]
    assert plan["blend"] == "scene.blend" and plan["missing"] == []
    assert {"lib/lib.blend", "textures/checker.png"} <= set(plan["files"])
    uploads = [e for e in events if e["event"] == "uploading"]
    assert uploads[-1]["done"] == uploads[-1]["total"] > 0
    project = events[-1]["project"]
    assert (project["title"], project["frame_start"], project["tiles"]) == ("Lines", 2, 2)


def test_addon_submit_of_no_blend_is_an_error_event_and_one_line(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    runner = CliRunner(env={"BLENDFARM_SERVER": None})
    result = runner.invoke(app, ["addon", "submit", str(tmp_path / "gone.blend")], obj=farm.client)
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "event": "error",
        "message": f"{tmp_path / 'gone.blend'} does not exist",
    }
    assert "Traceback" not in result.output
    assert farm.client.get("/api/projects").json() == []


# -- a real Blender with the add-on, a real farm -------------------------------------------


@pytest.fixture(scope="module")
def blender_home(blender: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a Blender whose user folders are temporary, with the add-on
    installed and enabled there by `blendfarm addon install`."""
    root = tmp_path_factory.mktemp("blender-home")
    env = dict(
        os.environ,
        BLENDER_USER_CONFIG=str(root / "config"),
        BLENDER_USER_SCRIPTS=str(root / "scripts"),
        BLENDER_USER_EXTENSIONS=str(root / "extensions"),
        XDG_CACHE_HOME=str(root / "cache"),
    )
    proc = subprocess.run(
        [*BLENDFARM, "addon", "install", "--blender", blender],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installed and enabled the blendfarm add-on (blendfarm_blender)" in proc.stdout
    assert "legacy add-on" in proc.stdout  # Debian's Blender 3.4
    assert (root / "scripts" / "addons" / MODULE / "ui.py").exists()
    assert (root / "config" / "userpref.blend").exists()
    return env


@pytest.fixture(scope="module")
def one_node_farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FarmProcesses]:
    farm = FarmProcesses(tmp_path_factory.mktemp("farm"))
    farm.start_server()
    farm.start_node("only", "--threads", "1")
    try:
        yield farm
    finally:
        farm.close()


def blender_python(blender: str, env: dict[str, str], blend: Path, code: str) -> str:
    """Run `code` in `blender -b blend`; its output (a Python error fails the run)."""
    proc = subprocess.run(
        [blender, "-b", str(blend), "-noaudio", "--python-exit-code", "3", "--python-expr", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return output


def submitted_id(output: str) -> str:
    found = re.findall(r"blendfarm: submitted .* as project (\w+)", output)
    assert len(found) == 1, output[-3000:]
    return found[0]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_scene_submitted_from_blender_renders_the_same_pixels_as_from_the_shell(
    blender: str,
    blender_home: dict[str, str],
    one_node_farm: FarmProcesses,
    scene: Path,
    tmp_path: Path,
) -> None:
    farm = one_node_farm
    blend = scene
    saved = blend.read_bytes()
    # A change in the open file is neither saved nor sent: the file as saved is (61 wide).
    output = blender_python(
        blender,
        blender_home,
        blend,
        "import bpy\n"
        "bpy.context.scene.render.resolution_x = 99\n"
        f"result = bpy.ops.blendfarm.submit(server={farm.url!r}, title='From Blender',"
        " frames='1', tiles=2, overscan=4, priority=70)\n"
        "assert result == {'FINISHED'}, result\n"
        "print('left for scripts:', bpy.context.window_manager.blendfarm_project)\n",
    )
    from_blender = submitted_id(output)
    assert f"left for scripts: {from_blender}" in output
    assert blend.read_bytes() == saved
    shell = farm.cli(
        "submit", str(blend), "--json", "--title", "From the shell", "--frame", "1",
        "--tiles", "2", "--overscan", "4",
    )  # fmt: skip
    from_shell = json.loads(shell.stdout)["id"]

    results = {}
    for pid in (from_blender, from_shell):
        done = farm.wait_state(pid, {"done", "error"})
        assert done["state"] == "done", done
        assert (done["width"], done["height"], done["tiles"], done["overscan"]) == (61, 47, 2, 4)
        assert (done["frame_start"], done["frame_end"], done["animation"]) == (1, 1, False)
        assert done["priority"] == (70 if pid == from_blender else 50)
        out = farm.cli("fetch", pid, "-o", str(tmp_path)).stdout.strip().splitlines()[-1]
        results[pid] = read_png(Path(out))
    assert results[from_blender].shape == results[from_shell].shape
    diff = np.abs(results[from_blender].astype(int) - results[from_shell].astype(int)).max()
    assert diff <= 2  # the same file, the same settings: the same pixels (within the dither)


@pytest.mark.e2e
@pytest.mark.slow
def test_blender_lists_missing_files_and_says_why_it_cannot_submit(
    blender: str, blender_home: dict[str, str], one_node_farm: FarmProcesses, tmp_path: Path
) -> None:
    folder = tmp_path / "gone"
    make_project(blender, folder, width=41, height=31, end=1)
    (folder / "textures" / "checker.png").unlink()
    output = blender_python(
        blender,
        blender_home,
        folder / "scene.blend",
        f"import bpy\nbpy.ops.blendfarm.submit(server={one_node_farm.url!r}, frames='1')\n",
    )
    assert re.search(r"blendfarm: warning: missing file: .*checker\.png", output)
    pid = submitted_id(output)
    project = one_node_farm.wait_state(pid, {"done", "error"})
    assert any("missing" in w and "checker.png" in w for w in project["warnings"]), project

    proc = subprocess.run(
        [
            blender,
            "-b",
            str(folder / "scene.blend"),
            "--python-exit-code",
            "3",
            "--python-expr",
            "import bpy\nbpy.ops.blendfarm.submit(server='http://127.0.0.1:9')\n",
        ],
        env=blender_home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3
    assert "blendfarm: cannot reach the server at http://127.0.0.1:9" in proc.stdout + proc.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_the_panel_in_blenders_window_shows_the_farm_and_the_project(
    blender: str, blender_home: dict[str, str], one_node_farm: FarmProcesses, scene: Path
) -> None:
    """Blender's interface under Xvfb: the panel tests the connection, submits, follows the
    project to `done`; its screenshot is the README's picture of the panel. With unsaved
    changes, Submit asks before anything is sent."""
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        missing("xvfb-run is not installed (apt-get install xvfb xauth)")
    assert xvfb is not None
    shot = SCREENSHOT.with_suffix(".full.png")
    proc = subprocess.run(
        [
            xvfb,
            "-a",
            "-s",
            "-screen 0 1000x760x24",
            blender,
            str(scene),
            "-noaudio",
            "--python",
            str(SCREENSHOT_SCRIPT),
            "--",
            str(shot),
            one_node_farm.url,
        ],
        env=blender_home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    state = dict(re.findall(r"@@(\w+) (.*)", output))
    assert state.get("nodes") == "1 node online: only (idle)", output[-3000:]
    assert state.get("project") == "done", output[-3000:]
    # With unsaved changes Submit asks first (a dialog) and starts nothing.
    assert state.get("unsaved") == "dirty=True answer=['RUNNING_MODAL'] job=None", output[-3000:]
    titles = [p["title"] for p in one_node_farm.client.get("/api/projects").json()]
    assert "Shot 010" in titles and "Unsaved" not in titles
    assert shot.exists(), output[-3000:]
    from PIL import Image

    x, y, width, height = map(int, state["area"].split())
    with Image.open(shot) as image:
        top = image.height - (y + height)
        image.crop((x, top, x + width, top + height)).save(SCREENSHOT)
    shot.unlink()


@pytest.mark.e2e
def test_the_addon_reads_the_farm_with_urllib(one_node_farm: FarmProcesses) -> None:
    url = one_node_farm.url
    deadline = time.monotonic() + 60
    while not addon_farm.nodes(url) and time.monotonic() < deadline:
        time.sleep(0.2)  # the node registers within seconds of starting
    assert [n["name"] for n in addon_farm.nodes(url)] == ["only"]
    with pytest.raises(addon_farm.FarmError) as caught:
        addon_farm.project(url, "nope")
    assert (caught.value.status, str(caught.value)) == (404, "no project 'nope'")
    with pytest.raises(addon_farm.FarmError, match="is not a project id"):
        addon_farm.project(url, "../admin")
    with pytest.raises(addon_farm.FarmError, match="cannot reach the farm at http://127.0.0.1:9"):
        addon_farm.nodes("http://127.0.0.1:9")
