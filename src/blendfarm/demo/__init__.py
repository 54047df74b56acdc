"""`blendfarm demo`: something to render on the first run.

The demo project is made with the farm's Blender by make_scene.py (which also makes the
tests' scenes): a textured plane, a cube linked from a library .blend, a sphere moving over
eight frames, rendered by Cycles on the CPU at a small size. It is submitted twice, as a
tiled still and as a short animation, exactly as `blendfarm submit scene.blend` would.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import BlendfarmError
from ..node.blender import BPY

SCENE_SCRIPT = Path(__file__).with_name("make_scene.py")
TIMEOUT = 300
SCENE = {"width": 320, "height": 180, "samples": 16, "start": 1, "end": 8, "fps": 8}


@dataclass(frozen=True)
class DemoJob:
    """One submission of the demo scene."""

    title: str
    frame: int | None = None
    frames: str = ""
    tiles: int = 1
    overscan: int = 0


JOBS = (
    DemoJob("blendfarm demo: tiled still", frame=1, tiles=2, overscan=8),
    DemoJob("blendfarm demo: animation", frames=f"{SCENE['start']}-{SCENE['end']}"),
)


def scene_command(blender: str, kind: str, out: Path, **opts: object) -> list[str]:
    """The Blender command line that makes one scene of `kind` ('library' or 'project')."""
    if blender == BPY:  # the bpy module, in a child Python as the node runs it
        args = [str(SCENE_SCRIPT), "--", kind, str(out)]
        return [sys.executable, "-P", "-c", _RUN_WITH_BPY, *args, *_opts(opts)]
    return [
        blender,
        "-b",
        "--factory-startup",
        "-noaudio",
        "--python-exit-code",
        "1",
        "--python",
        str(SCENE_SCRIPT),
        "--",
        kind,
        str(out),
        *_opts(opts),
    ]


def _opts(opts: dict[str, object]) -> list[str]:
    return [f"{key}={value}" for key, value in opts.items()]


# Runs a Blender script with the bpy module as `blender -b --python SCRIPT -- ARGS` would.
_RUN_WITH_BPY = (
    "import runpy, sys\n"
    "import bpy\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def make_scene(blender: str, kind: str, out: Path, **opts: object) -> Path:
    """Make one .blend with Blender; BlendfarmError with Blender's last words if it fails."""
    try:
        proc = subprocess.run(
            scene_command(blender, kind, out, **opts),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BlendfarmError(f"Blender could not make the demo scene: {exc}") from None
    if proc.returncode != 0 or not out.exists():
        lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise BlendfarmError(f"Blender could not make the demo scene: {last}")
    return out


def make_demo_project(blender: str, folder: Path) -> Path:
    """The demo project in `folder` (scene.blend, lib/lib.blend, textures/); the .blend."""
    make_scene(blender, "library", folder / "lib" / "lib.blend")
    return make_scene(blender, "project", folder / "scene.blend", **SCENE)
