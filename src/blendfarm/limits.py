"""What one project may ask of the farm, so the server stays responsive whatever comes in."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput

MAX_FRAMES = 100_000


@dataclass(frozen=True)
class Limits:
    """What one project may ask of the farm (the server stays responsive whatever comes in)."""

    max_chunks: int = 250_000  # chunk tasks of one project (frames x tiles x tiles)
    max_side: int = 16_384  # pixels per side of a frame
    max_frames: int = MAX_FRAMES


def check_size(frames: int, tiles: int, limits: Limits) -> None:
    """BadInput when `frames` frames in `tiles`x`tiles` chunks are more than the farm takes."""
    if frames > limits.max_frames:
        raise BadInput(f"{frames} frames is more than this farm takes ({limits.max_frames})")
    chunks = frames * tiles * tiles
    if chunks > limits.max_chunks:
        raise BadInput(
            f"{frames} frame(s) in {tiles}x{tiles} chunks make {chunks} chunks, more than this "
            f"farm takes in one project ({limits.max_chunks}): split the frame range or use "
            "fewer chunks"
        )
