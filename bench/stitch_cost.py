"""The server's CPU per stitched frame: chunk PNGs read, the frame PNG written, its thumbnail,
and the frame read back for the mp4 encoder.

    .venv/bin/python bench/stitch_cost.py [--small-frames 200] [--big-frames 3] [--out x.json]

Two cases, each timed in process CPU seconds (time.process_time) per frame, after the chunk
files are written (not timed):
- small: 64x48 8-bit RGBA frames in 2x2 chunks (bench/load.py's frames);
- big: 1920x1080 16-bit RGBA frames in 4x4 chunks;
each with the chunks as the farm's nodes write them (pngio.write_png) and, for the big frame,
as Blender writes them when no overscan is cut (libpng's filters: Paeth on every row here).
Pixels are a gradient with noise, as a render's are. Reported per frame: `stitch`
(compositor.stitch_files), `thumbnail` (the same with its thumbnail, minus stitch) and
`read_back` (frame_files.display_image + compositor.video_frame, what Mp4Writer.add does).
Not a `make bench` case: run it before and after a change to the compositor or pngio.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from blendfarm.compositor import stitch_files, video_frame
from blendfarm.frame_files import display_image
from blendfarm.pngio import read_png, write_png
from blendfarm.tiles import Rect, all_chunks, chunk_rect


def picture(width: int, height: int, deep: bool, seed: int) -> np.ndarray:
    """RGBA: smooth gradients with some noise, opaque."""
    top = 65535 if deep else 255
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    rgb = np.stack([x / width, y / height, (x + y + seed) % width / width], axis=-1) * top
    rgb += rng.normal(0, top / 100, rgb.shape)
    image = np.dstack([rgb.clip(0, top), np.full((height, width), top)])
    return image.astype(np.uint16 if deep else np.uint8)


def paeth_png(path: Path, image: np.ndarray) -> None:
    """A PNG with filter type 4 (Paeth) on every row, as libpng's adaptive filtering often
    chooses for rendered images (Blender writes its PNGs with libpng)."""
    height, width, planes = image.shape
    deep = image.dtype == np.uint16
    data = image.astype(">u2" if deep else np.uint8).view(np.uint8).reshape(height, -1)
    bpp = planes * (2 if deep else 1)
    x = data.astype(np.int16)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    rows = np.empty((height, 1 + data.shape[1]), np.uint8)
    rows[:, 0] = 4
    rows[:, 1:] = (x - pred) % 256
    head = struct.pack(">IIBBBBB", width, height, 16 if deep else 8, 6, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 2))
        + chunk(b"IEND", b"")
    )


def chunk_files(
    folder: Path, image: np.ndarray, tiles: int, writer: Callable[[Path, np.ndarray], None]
) -> list[tuple[Rect, Path]]:
    height, width = image.shape[:2]
    folder.mkdir(parents=True)
    pieces = []
    for row, col in all_chunks(tiles):
        rect = chunk_rect(width, height, tiles, row, col)
        path = folder / f"{row}-{col}.png"
        writer(path, image[rect.y0 : rect.y1, rect.x0 : rect.x1])
        pieces.append((rect, path))
    return pieces


def farm_png(path: Path, image: np.ndarray) -> None:
    write_png(path, image, durable=False)


def measure(
    tmp: Path, name: str, width: int, height: int, deep: bool, tiles: int, frames: int, writer: Any
) -> dict[str, float]:
    """CPU seconds per frame of each step."""
    sets = []
    for i in range(frames):
        image = picture(width, height, deep, i)
        sets.append((image, chunk_files(tmp / f"{name}-{i}", image, tiles, writer)))
    timed = {"stitch": 0.0, "stitch_thumbnail": 0.0, "read_back": 0.0}
    for i, (image, pieces) in enumerate(sets):
        out = tmp / f"{name}-{i}.png"
        began = time.process_time()
        stitch_files(pieces, width, height, out)
        timed["stitch"] += time.process_time() - began
        began = time.process_time()
        stitch_files(pieces, width, height, out, thumbnail=tmp / f"{name}-thumb.png")
        timed["stitch_thumbnail"] += time.process_time() - began
        began = time.process_time()
        video_frame(display_image(out))
        timed["read_back"] += time.process_time() - began
        if not np.array_equal(read_png(out), image):
            raise SystemExit(f"{name}: frame {i} was not stitched exactly")
    per = {key: value / frames for key, value in timed.items()}
    return {
        "frames": frames,
        "stitch": round(per["stitch"], 5),
        "thumbnail": round(per["stitch_thumbnail"] - per["stitch"], 5),
        "read_back": round(per["read_back"], 5),
        "frame_bytes": (tmp / f"{name}-0.png").stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small-frames", type=int, default=200)
    parser.add_argument("--big-frames", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    cases = [
        ("small 64x48 8-bit 2x2, farm chunks", 64, 48, False, 2, args.small_frames, farm_png),
        ("big 1920x1080 16-bit 4x4, farm chunks", 1920, 1080, True, 4, args.big_frames, farm_png),
        ("big 1920x1080 16-bit 4x4, Paeth chunks", 1920, 1080, True, 4, args.big_frames, paeth_png),
    ]
    figures = {}
    with tempfile.TemporaryDirectory(prefix="stitch-cost-") as folder:
        for n, (label, width, height, deep, tiles, frames, writer) in enumerate(cases):
            got = measure(Path(folder), f"c{n}", width, height, deep, tiles, frames, writer)
            figures[label] = got
            print(
                f"{label}: per frame (CPU s) stitch {got['stitch']:.5f}, thumbnail "
                f"{got['thumbnail']:.5f}, read back {got['read_back']:.5f}; "
                f"{got['frame_bytes']} bytes",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
