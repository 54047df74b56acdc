"""The official Blender from PyPI (`bpy`, blendfarm[blender]) as a node's Blender.

Sessions run in a child Python (bpy_session.py) speaking the same protocol as the Blender
executable; these tests drive it directly, and through real `blendfarm serve` / `node`
processes. GPU renders run only where a GPU is (marker `gpu`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from blendfarm.blendversion import can_open, read_version
from blendfarm.node.blender import (
    BPY,
    BPY_SESSION,
    BlenderSession,
    SessionRenderer,
    blender_version,
    session_command,
)
from blendfarm.node.blender import list_devices as blender_devices
from blendfarm.node.devices import BACKENDS, FAKE_ENV, from_blender
from blendfarm.pngio import read_png
from helpers import (
    BLENDFARM,
    FarmProcesses,
    blender_run,
    hide_bpy,
    make_project,
    render_direct,
    require_bpy,
    zip_folder,
)

HERE = Path(__file__).resolve().parent
BLOCKED = [
    "1 Python driver was not evaluated",
    "1 text block registered to run on load was not run",
    "Freestyle Python style modules were turned off",
]


@pytest.fixture(scope="session")
def bpy() -> str:
    return require_bpy()


@pytest.fixture(scope="module")
def bpy_project(bpy: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project saved by Blender 5.0 (61x47, frames 1-3)."""
    folder = tmp_path_factory.mktemp("bpy-project")
    make_project(bpy, folder, samples=8, width=61, height=47, start=1, end=3)
    return folder


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def test_bpy_is_blender_5_and_lists_its_gpus_in_a_child(bpy: str) -> None:
    assert blender_version(BPY).startswith("5.0.") and blender_version(BPY).endswith(" (bpy)")
    devices = from_blender(blender_devices(BPY))
    assert all(d.backend in BACKENDS and d.name and not d.fake for d in devices)


def test_a_bpy_session_of_n_threads_has_a_pool_of_n_and_every_cpu_back(bpy: str) -> None:
    """bpy has no `-t`: the session imports it on N CPUs (Blender sizes its thread pool then)
    and gives the process all its CPUs back, as `blender -t N` would run."""
    cmd = session_command(BPY, None, [], threads=1)
    assert cmd[cmd.index(str(BPY_SESSION)) + 1 : cmd.index(str(BPY_SESSION)) + 3] == [
        "--threads",
        "1",
    ]
    # TBB's own answer for the pool Blender renders with (oneTBB's max_concurrency(nullptr)).
    child = (
        "import ctypes, json, os, sys\n"
        "from blendfarm.node.bpy_session import cpus_for_import\n"
        "before = sorted(os.sched_getaffinity(0))\n"
        "with cpus_for_import(int(sys.argv[1])):\n"
        "    import bpy\n"
        "lib = [l.split()[-1] for l in open('/proc/self/maps') if 'libtbb.so' in l][0]\n"
        "pool = getattr(ctypes.CDLL(lib), '_ZN3tbb6detail2r115max_concurrency"
        "EPKNS0_2d115task_arena_baseE')\n"
        "pool.restype, pool.argtypes = ctypes.c_int, [ctypes.c_void_p]\n"
        "print(json.dumps([pool(None), before, sorted(os.sched_getaffinity(0))]))\n"
    )

    def run(threads: int) -> list:
        out = subprocess.run(
            [sys.executable, "-P", "-c", child, str(threads)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return list(json.loads(out.stdout.strip().splitlines()[-1]))

    threads, before, after = run(1)
    assert threads == 1  # Blender's pool, as with -t 1
    assert after == before  # the render threads may run on any CPU
    assert run(0)[0] == len(before)  # no limit: every CPU


def test_a_file_saved_by_bpy_waits_for_a_blender_that_opens_it(bpy_project: Path) -> None:
    with open(bpy_project / "scene.blend", "rb") as f:
        assert read_version(f) == (5, 0)
    assert not can_open("3.4.1", "5.0")
    assert can_open("5.0.1 (bpy)", "5.0")


@pytest.fixture
def scripted(bpy: str, tmp_path: Path) -> tuple[Path, Path]:
    """(a .blend carrying Python of each kind, saved by bpy; the folder for its markers)"""
    markers = tmp_path / "markers"
    markers.mkdir()
    blend = tmp_path / "project" / "scene.blend"
    blend.parent.mkdir()
    script = HERE / "make_scripted_scene.py"
    done = subprocess.run(
        blender_run(bpy, None, script, "", str(blend), str(markers)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert blend.exists() and list(markers.iterdir()) == [], done.stdout + done.stderr
    return blend, markers


def probe_and_render(blend: Path, trust: bool) -> tuple[dict, list[str]]:
    lines: list[str] = []
    session = BlenderSession(BPY, blend, lines.append, trust_scripts=trust)
    output = blend.parent / "chunk.png"
    try:
        probe = session.ask({"op": "probe"}, timeout=120)["probe"]
        session.ask({"op": "render", "frame": 1, "border": None, "output": str(output)}, 120)
    finally:
        session.close()
    assert output.stat().st_size > 0, "\n".join(lines)
    return probe, lines


@pytest.mark.slow
def test_a_bpy_session_runs_no_python_from_the_file(scripted: tuple[Path, Path]) -> None:
    blend, markers = scripted
    probe, _ = probe_and_render(blend, trust=False)
    assert sorted(p.name for p in markers.iterdir()) == []
    assert probe["scripts_blocked"] == BLOCKED
    assert probe["blender_version"].startswith("5.0")


@pytest.mark.slow
def test_a_trusting_bpy_session_runs_the_registered_text_block(
    scripted: tuple[Path, Path],
) -> None:
    blend, markers = scripted
    probe, _ = probe_and_render(blend, trust=True)
    assert "text" in {p.name for p in markers.iterdir()}
    assert probe["scripts_blocked"] == []


def test_an_absent_backend_is_refused_at_start_in_one_line(bpy: str, tmp_path: Path) -> None:
    reported = {d.backend for d in from_blender(blender_devices(BPY))}
    absent = next(b for b in ("CUDA", "HIP", "ONEAPI", "METAL", "OPTIX") if b not in reported)
    done = subprocess.run(
        [*BLENDFARM, "node", "--blender", "bpy", "--device", absent.lower()]
        + ["--server", "http://127.0.0.1:9", "--work-dir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1 and f"no {absent}" in errors[0].replace("oneAPI", "ONEAPI")
    assert "device found" in errors[0]


def node_log(farm: FarmProcesses, name: str) -> str:
    return "\n".join(farm.client.get(f"/api/nodes/{name}/log").json()["lines"])


def wait_log(farm: FarmProcesses, name: str, *needles: str, timeout: float = 30) -> str:
    """The node's log on the server once it holds every needle (heartbeats bring it)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = node_log(farm, name)
        if all(n in text for n in needles):
            return text
        time.sleep(0.3)
    raise AssertionError(f"{needles} not in the log of {name}:\n{text}\n{farm.logs()}")


def submit(farm: FarmProcesses, path: Path, *args: str) -> str:
    out = farm.cli("submit", str(path), "--json", "--blend", "scene.blend", *args)
    return str(json.loads(out.stdout)["id"])


@pytest.mark.e2e
@pytest.mark.slow
def test_a_bpy_node_renders_a_tiled_still_and_an_animation(
    live_farm: FarmProcesses, bpy: str, bpy_project: Path, tmp_path: Path
) -> None:
    archive = zip_folder(bpy_project, tmp_path / "p.zip")
    node = live_farm.start_node("py", "--blender", "bpy", "--device", "auto")
    still = submit(live_farm, archive, "--frame", "2", "--tiles", "2", "--overscan", "4")
    anim = submit(live_farm, archive, "--frames", "1-3", "--tiles", "2")
    for pid in (still, anim):
        done = live_farm.wait_state(pid, {"done", "error"})
        assert done["state"] == "done", done
    nodes = {n["name"]: n for n in live_farm.client.get("/api/nodes").json()}
    assert nodes["py"]["blender_version"].startswith("5.0.")
    assert nodes["py"]["blender_version"].endswith("(bpy)")
    assert nodes["py"]["slots"] == ["CPU"]  # no GPU here: auto fell back to the CPU
    assert nodes["py"]["chunks_done"] == 4 + 12
    # The render sessions run in a child Python: the node process never loads bpy.
    maps = Path(f"/proc/{node.pid}/maps").read_text()
    assert "/bpy/" not in maps and "cycles" not in maps
    out = tmp_path / "out"
    image = Path(live_farm.cli("fetch", still, "-o", str(out)).stdout.strip().splitlines()[-1])
    direct = render_direct(bpy, bpy_project / "scene.blend", 2, tmp_path / "direct.png")
    assert max_diff(read_png(image), read_png(direct)) <= 2
    video = Path(live_farm.cli("fetch", anim, "-o", str(out)).stdout.strip().splitlines()[-1])
    assert video.suffix == ".mp4" and video.stat().st_size > 0
    assert "on CPU" in wait_log(live_farm, "py", "rendering frame 2 on CPU")


@pytest.mark.e2e
@pytest.mark.slow
def test_denoised_chunks_with_overscan_match_a_whole_denoised_frame(
    live_farm: FarmProcesses, bpy: str, tmp_path: Path
) -> None:
    """OpenImageDenoise runs per chunk; the overscan gives it the pixels beyond each edge."""
    folder = tmp_path / "denoised"
    make_project(bpy, folder, samples=4, width=64, height=48, denoise=1, start=1, end=1)
    live_farm.start_node("oidn", "--blender", "bpy")
    archive = zip_folder(folder, tmp_path / "d.zip")
    # Denoised per chunk (--finish never), not whole by a finish task.
    args = ("--frame", "1", "--tiles", "2", "--overscan", "16", "--finish", "never")
    pid = submit(live_farm, archive, *args)
    done = live_farm.wait_state(pid, {"done", "error"})
    assert done["state"] == "done", done
    image = Path(live_farm.cli("fetch", pid, "-o", str(tmp_path)).stdout.strip().splitlines()[-1])
    denoised = read_png(render_direct(bpy, folder / "scene.blend", 1, tmp_path / "whole.png"))
    noisy_blend = folder / "noisy.blend"
    subprocess.run(
        blender_run(
            bpy,
            folder / "scene.blend",
            None,
            "import bpy; bpy.context.scene.cycles.use_denoising = False; "
            f"bpy.ops.wm.save_as_mainfile(filepath={str(noisy_blend)!r})",
        ),
        capture_output=True,
        timeout=120,
        check=True,
    )
    noisy = read_png(render_direct(bpy, noisy_blend, 1, tmp_path / "noisy.png"))
    stitched = read_png(image)
    # Denoising did run (the noisy render is far from it), and the chunks match the whole.
    noise = float(np.abs(noisy.astype(float) - denoised.astype(float)).mean())
    seams = float(np.abs(stitched.astype(float) - denoised.astype(float)).mean())
    print(f"noise {noise:.2f}, stitched {seams:.2f}, max {max_diff(stitched, denoised)}")
    assert seams < noise / 4


@pytest.mark.e2e
@pytest.mark.slow
def test_two_fake_gpus_give_two_bpy_sessions_each_told_its_device(
    live_farm: FarmProcesses, bpy: str, bpy_project: Path, tmp_path: Path
) -> None:
    live_farm.start_node(
        "twin", "--blender", "bpy", "--device", "cuda", env={FAKE_ENV: "CUDA:Fake A,CUDA:Fake B"}
    )
    archive = zip_folder(bpy_project, tmp_path / "p.zip")
    pid = submit(live_farm, archive, "--frames", "1-3", "--tiles", "2")
    keeps = submit(live_farm, archive, "--frame", "1", "--device", "scene")
    for project in (pid, keeps):
        done = live_farm.wait_state(project, {"done", "error"})
        assert done["state"] == "done", done
    node = {n["name"]: n for n in live_farm.client.get("/api/nodes").json()}["twin"]
    assert node["slots"] == ["CUDA 0 (Fake A)", "CUDA 1 (Fake B)"]
    log = wait_log(
        live_farm,
        "twin",
        "[CUDA 0 (Fake A)] blendfarm: rendering frame",
        "[CUDA 1 (Fake B)] blendfarm: rendering frame",
    )
    assert "on CUDA 0 (Fake A) [fake device: rendered on the CPU]" in log
    assert "on CUDA 1 (Fake B) [fake device: rendered on the CPU]" in log
    # The project asked to keep the scene's own device, the CPU (tests/make_scene.py sets it).
    assert "blendfarm: rendering frame 1 on CPU (the scene asks for it)" in log


@pytest.mark.gpu
def test_a_real_gpu_renders_a_chunk(bpy: str, bpy_project: Path, tmp_path: Path) -> None:
    devices = from_blender(blender_devices(BPY))
    if not devices:
        pytest.skip("no GPU on this machine: Blender reports no CUDA/OptiX/HIP/oneAPI/Metal device")
    lines: list[str] = []
    renderer = SessionRenderer(BPY, lines.append, device=devices[0])
    output = tmp_path / "gpu.png"
    try:
        command = {"frame": 1, "border": [0, 0.5, 0, 0.5], "output": str(output), "threads": 0}
        renderer.render(bpy_project / "scene.blend", command)
    finally:
        renderer.close()
    assert output.stat().st_size > 0
    assert any(f"on {devices[0].label}" in line and "fake" not in line for line in lines), lines


@pytest.mark.e2e
def test_a_node_without_blender_on_its_path_uses_bpy_and_without_bpy_waits(
    live_farm: FarmProcesses, bpy: str, tmp_path: Path
) -> None:
    live_farm.start_node("bare", env={"PATH": "/nonexistent"})
    live_farm.start_node("none", env=hide_bpy({"PATH": "/nonexistent"}, tmp_path / "no-bpy"))
    deadline = time.monotonic() + 60
    nodes: dict = {}
    while time.monotonic() < deadline and "bare" not in nodes:
        nodes = {n["name"]: n for n in live_farm.client.get("/api/nodes").json()}
        time.sleep(0.3)
    assert nodes["bare"]["blender_version"].endswith("(bpy)"), live_farm.logs()
    while time.monotonic() < deadline and "no Blender to render with" not in live_farm.log(
        "node-none"
    ):
        time.sleep(0.3)
    assert "no bpy module" in live_farm.log("node-none"), live_farm.logs()
    assert "none" not in {n["name"] for n in live_farm.client.get("/api/nodes").json()}
