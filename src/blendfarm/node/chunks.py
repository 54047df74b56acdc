"""Finishing a chunk on the node: check what Blender wrote, cut the overscan off."""

from __future__ import annotations

from pathlib import Path

from ..errors import BlendfarmError
from ..pngio import NotAPng, read_png, write_png
from ..tiles import Rect, crop_box


def finish_chunk(path: Path, rendered: Rect, wanted: Rect) -> None:
    """Check what Blender wrote (whole, the expected size) and cut the overscan off, in place."""
    try:
        img = read_png(path)
    except NotAPng as exc:
        raise BlendfarmError(f"Blender wrote a damaged image ({exc}); is the disk full?") from None
    if img.shape[:2] != (rendered.height, rendered.width):
        raise BlendfarmError(
            f"Blender rendered {img.shape[1]}x{img.shape[0]}, expected "
            f"{rendered.width}x{rendered.height}"
        )
    if rendered != wanted:
        box = crop_box(rendered, wanted)
        # A scratch file, sent and deleted at once: no fsync on the node's chunk loop.
        write_png(path, img[box.y0 : box.y1, box.x0 : box.x1], durable=False)
