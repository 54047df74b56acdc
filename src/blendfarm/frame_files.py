"""Final frames in the scene's format, and any frame read back for a screen.

The direct path stitches PNG chunks (8 or 16-bit, the scene's view transform already applied
by Blender) and converts the stitched frame to the scene's display format here: JPEG and 8-bit
TIFF through Pillow, 16-bit TIFF through tifffile, PNG as it is. EXR frames are stitched from
EXR chunks (exr.stitch_exr) and need no conversion. `display_image` reads a frame of any of
those formats as 8 or 16-bit pixels for a video frame or a thumbnail (EXR tone-mapped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .atomic import replacing
from .exr import read_rgba, tone_map
from .formats import OutputFormat
from .pngio import read_png, to_uint8

_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _planes(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else image[:, :, None]


def write_jpeg(image: np.ndarray, out: Path, quality: int = 90) -> None:
    """A JPEG of `image` (8 or 16-bit; grey or colour, alpha dropped as Blender does)."""
    img = to_uint8(_planes(image))
    img = img[:, :, :1] if img.shape[2] <= 2 else img[:, :, :3]
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img, _MODES[img.shape[2]])
    with replacing(out) as tmp:
        pil.save(tmp, format="JPEG", quality=max(1, min(quality, 100)))


def write_tiff(image: np.ndarray, out: Path, deep: bool) -> None:
    """A TIFF of `image` (grey, grey+alpha, RGB or RGBA), 16-bit when `deep`, else 8-bit;
    alpha stored as unassociated (straight, as in the PNG it comes from), deflate-compressed."""
    img = _planes(image)
    if deep and img.dtype != np.uint16:
        img = img.astype(np.uint16) * 257  # exact: 8-bit v is 16-bit v * 257
    elif not deep:
        img = to_uint8(img)
    planes = img.shape[2]
    photometric = "minisblack" if planes <= 2 else "rgb"
    extra = ["unassalpha"] if planes in (2, 4) else []
    data = img[:, :, 0] if planes == 1 else img
    with replacing(out, ".tif") as tmp:
        tifffile.imwrite(tmp, data, photometric=photometric, extrasamples=extra, compression="zlib")


def read_tiff(path: Path) -> np.ndarray:
    """A TIFF as (height, width, channels), 8 or 16-bit."""
    return _planes(np.asarray(tifffile.imread(path)))


def read_jpeg(path: Path) -> np.ndarray:
    with Image.open(path) as pil:
        return _planes(np.asarray(pil))


def convert_png(stitched: Path, output: OutputFormat, out: Path) -> None:
    """The stitched PNG frame as the scene's display format at `out` (JPEG or TIFF)."""
    image = read_png(stitched)
    if output.family == "jpeg":
        write_jpeg(image, out, output.quality)
    elif output.family == "tiff":
        write_tiff(image, out, output.deep)
    else:
        raise ValueError(f"a PNG frame is not converted to {output.describe()}")


def display_image(path: Path) -> np.ndarray:
    """A frame file of any of the farm's formats as (height, width, channels) 8 or 16-bit
    pixels for a screen: EXR tone-mapped (exr.tone_map), the others as they are."""
    suffix = path.suffix.lower()
    if suffix == ".exr":
        return tone_map(read_rgba(path))
    if suffix == ".jpg":
        return read_jpeg(path)
    if suffix == ".tif":
        return read_tiff(path)
    return read_png(path)
