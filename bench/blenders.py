"""The two kinds of Blender the benches run, behind one interface: an executable
(`blender -b ...`, e.g. Debian's 3.4) or `bpy` (the official Blender as a Python module, run
in a child Python of this venv exactly as the node runs it).

A plain render here is the baseline the farm is measured against: `blender -b FILE -t N
-o OUT -F PNG -a` (or `-f F`), and for bpy the same steps in a child Python (open the file,
fixed threads, render the animation or one frame to PNG).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAKE_SCENE = ROOT / "tests" / "make_scene.py"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"

# Runs in the child Python: argv = FILE OUT THREADS FRAME (FRAME 0: the whole animation).
_BPY_RENDER = """
import sys
import bpy
blend, out, threads, frame = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
scene = bpy.context.scene
render = scene.render
render.threads_mode = "FIXED" if threads > 0 else "AUTO"
if threads > 0:
    render.threads = threads
render.filepath = out
render.image_settings.file_format = "PNG"
if frame:
    scene.frame_set(frame)
    render.filepath = out.replace("####", f"{frame:04d}")
    bpy.ops.render.render(write_still=True)
else:
    bpy.ops.render.render(animation=True)
"""

# Runs in the child Python: argv = SCRIPT -- KIND OUT OPTIONS (as `blender --python SCRIPT --`).
_BPY_SCRIPT = """
import runpy
import sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


@dataclass(frozen=True)
class Blender:
    """`spec` is "bpy" or the path of a Blender executable (as `blendfarm node --blender`)."""

    spec: str

    @property
    def is_bpy(self) -> bool:
        return self.spec == "bpy"

    @property
    def tag(self) -> str:
        """A short name for file names and tables: bpy, blender-3.4 ..."""
        return "bpy" if self.is_bpy else Path(self.spec).name

    def python(self) -> str:
        return str(VENV_PYTHON if VENV_PYTHON.exists() else Path(sys.executable))

    def version(self) -> str:
        if self.is_bpy:
            code = "import bpy; print(bpy.app.version_string)"
            cmd = [self.python(), "-P", "-c", code]
        else:
            cmd = [self.spec, "--version"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        if out.returncode != 0 or not lines:
            raise RuntimeError(f"{self.spec}: no version ({out.stderr.strip()[-300:]})")
        text = lines[-1] if self.is_bpy else lines[0]
        return f"{text.strip()} (bpy)" if self.is_bpy else text.strip()

    def script_command(self, script: Path, args: list[str]) -> list[str]:
        """Run `script` inside this Blender with `args` after its "--"."""
        if self.is_bpy:
            return [self.python(), "-P", "-c", _BPY_SCRIPT, str(script), "--", *args]
        return [self.spec, "-b", "--factory-startup", "--python", str(script), "--", *args]

    def render_command(self, blend: Path, out: str, threads: int, frame: int = 0) -> list[str]:
        """Plain Blender: render `frame` (0: the whole animation) to PNGs named `out`
        (with ####) on `threads` threads (0: all cores)."""
        if self.is_bpy:
            args = [str(blend), out, str(threads), str(frame)]
            return [self.python(), "-P", "-c", _BPY_RENDER, *args]
        cmd = [self.spec, "-b", str(blend)]
        if threads > 0:
            cmd += ["-t", str(threads)]
        cmd += ["-o", out, "-F", "PNG"]
        return [*cmd, "-f", str(frame)] if frame else [*cmd, "-a"]


def default_executable() -> str:
    return shutil.which("blender") or "/usr/bin/blender"


def run_timed(cmd: list[str], timeout: float, **kw: object) -> float:
    """Run `cmd` to the end; its wall seconds. Raises RuntimeError with the output's tail
    when it fails."""
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
        **kw,  # type: ignore[arg-type]
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-12:])
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {proc.returncode}:\n{tail}")
    return wall


def make_project(
    blender: Blender, folder: Path, width: int, height: int, samples: int, frames: int
) -> Path:
    """The test project of tests/make_scene.py in `folder`: lib/lib.blend (linked),
    textures/checker.png and scene.blend (Cycles, CPU, `samples`, frames 1..`frames`)."""
    run_timed(
        blender.script_command(MAKE_SCENE, ["library", str(folder / "lib" / "lib.blend")]), 180
    )
    scene = folder / "scene.blend"
    opts = [f"width={width}", f"height={height}", f"samples={samples}", "start=1", f"end={frames}"]
    run_timed(blender.script_command(MAKE_SCENE, ["project", str(scene), *opts]), 180)
    return scene
