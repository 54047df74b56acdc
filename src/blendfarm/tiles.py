"""Tile geometry: which integer pixels each chunk of a frame covers.

Coordinates are image pixels with the origin at the top-left: row 0 is the top row of
chunks, column 0 the left column. Rectangles are half-open: x in [x0, x1), y in [y0, y1).
Blender's render border has its origin at the bottom-left and is given as fractions of the
frame; `blender_border` converts exactly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_dict(self) -> dict[str, int]:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1}


def effective_size(resolution_x: int, resolution_y: int, percentage: int) -> tuple[int, int]:
    """The frame size Blender renders: resolution scaled by the percentage, as Blender rounds it."""
    return resolution_x * percentage // 100, resolution_y * percentage // 100


def chunk_rect(width: int, height: int, tiles: int, row: int, col: int) -> Rect:
    """Chunk (row, col) of a `tiles`×`tiles` split of a width×height frame."""
    if width < 1 or height < 1:
        raise ValueError(f"frame size {width}x{height} is empty")
    if tiles < 1:
        raise ValueError("tiles must be at least 1")
    if not (0 <= row < tiles and 0 <= col < tiles):
        raise ValueError(f"chunk ({row}, {col}) is outside a {tiles}x{tiles} split")
    if tiles > min(width, height):
        raise ValueError(f"a {width}x{height} frame cannot be cut into {tiles}x{tiles} chunks")
    return Rect(
        col * width // tiles,
        row * height // tiles,
        (col + 1) * width // tiles,
        (row + 1) * height // tiles,
    )


def grow(rect: Rect, width: int, height: int, overscan: int) -> Rect:
    """`rect` grown by `overscan` pixels on every inner edge, clamped to the frame."""
    if overscan < 0:
        raise ValueError("overscan must not be negative")
    return Rect(
        max(0, rect.x0 - overscan),
        max(0, rect.y0 - overscan),
        min(width, rect.x1 + overscan),
        min(height, rect.y1 + overscan),
    )


def crop_box(rendered: Rect, wanted: Rect) -> Rect:
    """Where `wanted` lies inside an image of the `rendered` rectangle (to cut overscan off)."""
    return Rect(
        wanted.x0 - rendered.x0,
        wanted.y0 - rendered.y0,
        wanted.x1 - rendered.x0,
        wanted.y1 - rendered.y0,
    )


@dataclass(frozen=True)
class Border:
    """Blender's render border: fractions of the frame, origin bottom-left."""

    min_x: float
    max_x: float
    min_y: float
    max_y: float


def _edge(pixels: int, size: int) -> float:
    # Blender truncates `fraction * size` to an int (float32 fractions). Aiming at the
    # pixel's centre makes the truncation land on `pixels` whatever the rounding.
    if pixels >= size:
        return 1.0
    return (pixels + 0.5) / size


def blender_border(rect: Rect, width: int, height: int) -> Border:
    """The border that makes Blender render exactly the pixels of `rect`."""
    return Border(
        min_x=_edge(rect.x0, width),
        max_x=_edge(rect.x1, width),
        min_y=_edge(height - rect.y1, height),
        max_y=_edge(height - rect.y0, height),
    )


def border_pixels(border: Border, width: int, height: int) -> Rect:
    """The pixels Blender renders for `border` (its float32 truncation), top-left origin."""
    import numpy as np

    def trunc(fraction: float, size: int) -> int:
        return int(np.float32(fraction) * np.float32(size))

    x0, x1 = trunc(border.min_x, width), trunc(border.max_x, width)
    by0, by1 = trunc(border.min_y, height), trunc(border.max_y, height)
    return Rect(x0, height - by1, x1, height - by0)


def all_chunks(tiles: int) -> list[tuple[int, int]]:
    """Every (row, col) of a `tiles`×`tiles` split, in reading order."""
    return [(r, c) for r in range(tiles) for c in range(tiles)]
