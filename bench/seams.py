"""Seams of tiled stills: chunks denoised and composited on their own vs finished whole.

    .venv/bin/python bench/seams.py [--width 161 --height 121 --samples 8 --tiles 2-8]

1. Makes the scene of tests/make_finish_scene.py with bpy (Cycles with OpenImageDenoise, a
   blur and a glare node: effects that reach across chunk edges).
2. Renders it whole (the reference) and whole under another seed (the noise floor).
3. For every N in --tiles, through the node's own Blender session code (SessionRenderer):
   - per chunk: every chunk rendered, denoised and composited on its own (finish never,
     no overscan) and stitched;
   - finish: every chunk rendered raw (finish always), stitched exactly (exr.stitch_exr),
     then denoised and composited whole once (the finish task's Blender command).
4. Reports each result's PSNR against the reference and its seam ratio (mean absolute
   difference on the pixels next to chunk edges over the interior's; 1.0 is no seam), and
   writes bench/results/seams.json; with --picture PATH also the README's figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from blendfarm.compositor import stitch
from blendfarm.exr import stitch_exr
from blendfarm.node.blender import BPY, SessionRenderer
from blendfarm.pngio import read_png
from blendfarm.tiles import all_chunks, blender_border, chunk_rect

ROOT = Path(__file__).resolve().parent.parent
SCENE = ROOT / "tests" / "make_finish_scene.py"
RESULTS = ROOT / "bench" / "results"


def make_scene(out: Path, **opts: object) -> Path:
    args = [str(out), *(f"{k}={v}" for k, v in opts.items())]
    code = f"import sys, runpy; sys.argv = {['x', '--', *args]!r}; runpy.run_path({str(SCENE)!r})"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    return out


def as_float(img: np.ndarray) -> np.ndarray:
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img[..., :3].astype(np.float64) / scale


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def db(value: float) -> float | str:
    """A PSNR for JSON: "inf" when the images are identical."""
    return "inf" if value == float("inf") else round(value, 2)


def edge_mask(w: int, h: int, tiles: int) -> np.ndarray:
    edge = np.zeros((h, w), dtype=bool)
    for i in range(1, tiles):
        x, y = chunk_rect(w, h, tiles, 0, i).x0, chunk_rect(w, h, tiles, i, 0).y0
        edge[:, x - 1 : x + 1] = True
        edge[y - 1 : y + 1, :] = True
    return edge


def seam_ratio(a: np.ndarray, b: np.ndarray, tiles: int) -> float:
    diff = np.abs(a - b).mean(axis=2)
    edge = edge_mask(a.shape[1], a.shape[0], tiles)
    inner = float(diff[~edge].mean())
    return float(diff[edge].mean()) / inner if inner else 0.0


class Farmless:
    """The node's Blender session on one .blend, driven as a node drives it."""

    def __init__(self, blend: Path, work: Path, width: int, height: int):
        self.blend, self.work, self.w, self.h = blend, work, width, height
        self.renderer = SessionRenderer(BPY, log=lambda _line: None, warm=True)

    def whole(self, seed: int | None = None) -> np.ndarray:
        out = self.work / f"whole-{seed}.png"
        blend = self.blend
        if seed is not None:  # the same scene under another seed, in its own file
            blend = self.work / f"seed-{seed}.blend"
            code = (
                f"import bpy; bpy.context.scene.cycles.seed = {seed}; "
                f"bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})"
            )
            run = f"import bpy; bpy.ops.wm.open_mainfile(filepath={str(self.blend)!r}); {code}"
            subprocess.run([sys.executable, "-c", run], check=True, capture_output=True)
        self.renderer.render(blend, {"frame": 1, "border": None, "output": str(out)})
        return read_png(out)

    def _chunk(self, tiles: int, row: int, col: int, finish: str) -> Path:
        rect = chunk_rect(self.w, self.h, tiles, row, col)
        b = blender_border(rect, self.w, self.h)
        border = [b.min_x, b.max_x, b.min_y, b.max_y]
        out = self.work / f"c{tiles}-{row}-{col}.png"
        command = {"frame": 1, "border": border, "output": str(out), "tiles": tiles}
        return self.renderer.render(self.blend, {**command, "finish": finish})

    def per_chunk(self, tiles: int) -> np.ndarray:
        parts = []
        for row, col in all_chunks(tiles):
            path = self._chunk(tiles, row, col, "never")
            parts.append((chunk_rect(self.w, self.h, tiles, row, col), read_png(path)))
        return stitch(parts, self.w, self.h)

    def finished(self, tiles: int) -> np.ndarray:
        chunks = []
        for row, col in all_chunks(tiles):
            path = self._chunk(tiles, row, col, "always")
            chunks.append((chunk_rect(self.w, self.h, tiles, row, col), path))
        passes = self.work / f"passes-{tiles}.exr"
        stitch_exr(chunks, self.w, self.h, passes)
        out = self.work / f"final-{tiles}.png"
        self.renderer.finish(self.blend, {"frame": 1, "passes": str(passes), "output": str(out)})
        return read_png(out)

    def close(self) -> None:
        self.renderer.close()


def to8(img: np.ndarray) -> Image.Image:
    rgb = np.clip(as_float(img) * 255 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def picture(
    direct: np.ndarray, alone: np.ndarray, finished: np.ndarray, tiles: int, out: Path
) -> None:
    """Direct render, chunks finished alone (their edges drawn), the finished frame; under
    the last two, their difference to the direct render, amplified."""
    gain = 8
    h, w = direct.shape[:2]
    scale = max(1, 240 // w)
    pad, label = 8, 18
    sheet = Image.new("RGB", (3 * w * scale + 4 * pad, 2 * (h * scale + label) + 3 * pad), "white")
    draw = ImageDraw.Draw(sheet)

    def put(img: Image.Image, col: int, row: int, text: str, grid: bool = False) -> None:
        img = img.resize((w * scale, h * scale), Image.Resampling.NEAREST)
        if grid:
            g = ImageDraw.Draw(img)
            for i in range(1, tiles):
                x = chunk_rect(w, h, tiles, 0, i).x0 * scale
                y = chunk_rect(w, h, tiles, i, 0).y0 * scale
                g.line([(x, 0), (x, h * scale)], fill=(255, 60, 60))
                g.line([(0, y), (w * scale, y)], fill=(255, 60, 60))
        x0 = pad + col * (w * scale + pad)
        y0 = pad + row * (h * scale + label + pad)
        draw.text((x0, y0), text, fill="black")
        sheet.paste(img, (x0, y0 + label))

    def diff(img: np.ndarray) -> Image.Image:
        d = np.abs(as_float(img) - as_float(direct)) * gain
        return Image.fromarray(np.clip(d * 255, 0, 255).astype(np.uint8), "RGB")

    put(to8(direct), 0, 0, "direct render (whole frame)")
    put(to8(alone), 1, 0, f"{tiles}x{tiles} chunks, each finished alone", grid=True)
    put(to8(finished), 2, 0, "raw chunks, finished whole")
    put(diff(alone), 1, 1, f"difference x{gain}: chunks alone")
    put(diff(finished), 2, 1, f"difference x{gain}: finished whole")
    sheet.save(out, optimize=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=161)
    ap.add_argument("--height", type=int, default=121)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--tiles", default="2-8", help="N or A-B: chunks per side")
    ap.add_argument("--picture", type=Path, help="also draw the figure (at --picture-tiles)")
    ap.add_argument("--picture-tiles", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "seams.json")
    args = ap.parse_args()
    low, _, high = args.tiles.partition("-")
    counts = list(range(int(low), int(high or low) + 1))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="seams-") as tmp:
        work = Path(tmp)
        blend = make_scene(
            work / "scene.blend", width=args.width, height=args.height, samples=args.samples
        )
        farm = Farmless(blend, work, args.width, args.height)
        try:
            direct = farm.whole()
            reference = as_float(direct)
            noise = psnr(reference, as_float(farm.whole(seed=99)))
            rows: list[dict[str, Any]] = []
            for n in counts:
                alone, finished = farm.per_chunk(n), farm.finished(n)
                row = {
                    "tiles": n,
                    "per_chunk_psnr": db(psnr(reference, as_float(alone))),
                    "per_chunk_seam_ratio": round(seam_ratio(as_float(alone), reference, n), 2),
                    "finish_psnr": db(psnr(reference, as_float(finished))),
                    "finish_seam_ratio": round(seam_ratio(as_float(finished), reference, n), 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.picture and n == args.picture_tiles:
                    picture(direct, alone, finished, n, args.picture)
        finally:
            farm.close()
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "scene": {
            "width": args.width,
            "height": args.height,
            "samples": args.samples,
            "denoiser": "OpenImageDenoise (Cycles)",
            "compositor": "blur 5 px, fog glow",
        },
        "another_seed_psnr": round(noise, 2),
        "results": rows,
        "seconds": round(time.monotonic() - started, 1),
        "note": "psnr in dB against the whole-frame render (inf: bit-identical); seam ratio:"
        " mean |difference| on pixels next to chunk edges over the interior's",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"another seed: {noise:.2f} dB; written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
