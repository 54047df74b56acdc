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
from ..exr import read_exr
from ..protocol import Task
from ..tiles import Rect, blender_border
from .blender import Renderer
from .blender_finish import RAW_SUFFIX, raw_output


def is_raw(path: Path) -> bool:
    """Whether Blender wrote a raw chunk (blender_finish.raw_output names it so)."""
    return path.name.endswith(RAW_SUFFIX)


def raw_path(output: Path) -> Path:
    """Where Blender writes the raw chunk of a chunk whose output is `output`."""
    return Path(raw_output(str(output)))


def chunk_options(task: Task) -> dict[str, Any]:
    """What Blender needs to decide whether a chunk renders raw, and its border when it
    does (the chunk itself: a raw chunk needs no overscan)."""
    border = None
    if task.tiles and task.tiles > 1 and task.rect and task.width and task.height:
        b = blender_border(task.rect, task.width, task.height)
        border = [b.min_x, b.max_x, b.min_y, b.max_y]
    return {"tiles": task.tiles or 1, "finish": task.finish, "chunk_border": border}


def check_raw(path: Path, rect: Rect) -> None:
    """A raw chunk as Blender wrote it: a whole OpenEXR of the chunk's size."""
    try:
        img = read_exr(path)
    except ValueError as exc:
        raise BlendfarmError(
            f"Blender wrote a damaged raw chunk ({exc}); is the disk full?"
        ) from None
    if (img.width, img.height) != (rect.width, rect.height):
        raise BlendfarmError(
            f"Blender rendered a {img.width}x{img.height} raw chunk, expected "
            f"{rect.width}x{rect.height}"
        )


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
