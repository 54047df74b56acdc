"""Raw chunks and finish tasks on the node (the Blender side is blender_finish.py).

A chunk Blender rendered raw is checked (a readable OpenEXR of the chunk's size) and sent
with kind=raw. A finish task downloads its frame's stitched passes (verified against their
sha256), has Blender denoise and composite the whole frame from them in the project's warm
session, and sends the finished frame, in the scene's own format, with kind=final.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..client import ApiClient
from ..errors import BlendfarmError
from ..protocol import Task
from .blender import Renderer


def finish_frame(
    task: Task,
    blend: Path,
    out_dir: Path,
    client: ApiClient,
    renderer: Renderer,
    options: dict[str, Any],
    blender_finished: Callable[[], None],
) -> tuple[Path, Path]:
    """Download a finish task's passes and have Blender finish its frame; (passes, final
    frame) files, for the caller to send and delete. `options`: threads and timeout."""
    if task.frame is None or not task.passes_url or not task.passes_sha256:
        raise BlendfarmError(f"the server sent finish task {task.id} without its frame's passes")
    out_dir.mkdir(exist_ok=True)
    passes = out_dir / f"{task.id}.passes.exr"
    output = out_dir / f"{task.id}.final"
    output.unlink(missing_ok=True)
    client.fetch_verified(
        task.passes_url, passes, task.passes_sha256, f"the passes of frame {task.frame}"
    )
    written = renderer.finish(
        blend, {"frame": task.frame, "passes": str(passes), "output": str(output), **options}
    )
    blender_finished()
    if not written.is_file():
        raise BlendfarmError("Blender wrote no finished frame (see the log above)")
    return passes, written
