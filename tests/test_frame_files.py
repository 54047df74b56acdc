"""Frames in the scene's format without Blender: converters, stitching by kind, the mp4
encoded frame by frame, and EXR chunks cropped on the node."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import OpenEXR
import pytest

from blendfarm.compositor import Mp4Writer, stitch_chunks
from blendfarm.errors import BadChunks, BlendfarmError
from blendfarm.exr import read_exr, write_exr
from blendfarm.formats import OutputFormat
from blendfarm.frame_files import (
    convert_png,
    display_image,
    read_jpeg,
    read_tiff,
    write_jpeg,
    write_tiff,
)
from blendfarm.node.chunks import finish_chunk
from blendfarm.pngio import read_png, write_png
from blendfarm.tiles import Rect, all_chunks, chunk_rect, grow

RNG = np.random.default_rng(12)


def smooth(h: int, w: int, planes: int, dtype: type = np.uint8) -> np.ndarray:
    """A gradient image (JPEG keeps those well)."""
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0:h, 0:w] / np.array([max(h - 1, 1), max(w - 1, 1)])[:, None, None]
    chans = [(x * (1 - 0.2 * k) + y * 0.2 * k) * top for k in range(planes)]
    return np.round(np.dstack(chans)).astype(dtype)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("planes", [1, 2, 3, 4])
@pytest.mark.parametrize("deep", [False, True])
def test_a_tiff_keeps_every_value_of_its_depth(tmp_path: Path, planes: int, deep: bool) -> None:
    dtype = np.uint16 if deep else np.uint8
    image = RNG.integers(0, np.iinfo(dtype).max + 1, size=(13, 17, planes), dtype=dtype)
    write_tiff(image, tmp_path / "a.tif", deep)
    back = read_tiff(tmp_path / "a.tif")
    assert back.dtype == dtype and np.array_equal(back, image)


def test_an_8_bit_frame_becomes_a_16_bit_tiff_exactly(tmp_path: Path) -> None:
    image = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    write_tiff(image, tmp_path / "a.tif", deep=True)
    assert np.array_equal(read_tiff(tmp_path / "a.tif"), image.astype(np.uint16) * 257)


@pytest.mark.parametrize("planes", [1, 3, 4])
def test_a_jpeg_is_close_to_its_pixels_and_drops_alpha(tmp_path: Path, planes: int) -> None:
    image = smooth(40, 60, planes)
    write_jpeg(image, tmp_path / "a.jpg", quality=95)
    back = read_jpeg(tmp_path / "a.jpg")
    keep = 1 if planes == 1 else 3
    assert back.shape == (40, 60, keep)
    assert psnr(back, image[:, :, :keep]) > 35


def test_a_16_bit_frame_becomes_an_8_bit_jpeg(tmp_path: Path) -> None:
    image = smooth(20, 30, 3, np.uint16)
    write_jpeg(image, tmp_path / "a.jpg", quality=95)
    assert psnr(read_jpeg(tmp_path / "a.jpg"), (image // 257).astype(np.uint8)) > 35


def test_a_png_frame_is_not_converted_to_exr(tmp_path: Path) -> None:
    write_png(tmp_path / "f.png", smooth(4, 4, 3))
    with pytest.raises(ValueError):
        convert_png(tmp_path / "f.png", OutputFormat(file_format="OPEN_EXR"), tmp_path / "f.exr")


def exr_chunks(frame: dict[str, np.ndarray], tiles: int, folder: Path) -> list:
    h, w = next(iter(frame.values())).shape
    out = []
    for row, col in all_chunks(tiles):
        rect = chunk_rect(w, h, tiles, row, col)
        path = folder / f"{row}-{col}.exr"
        cut = {n: a[rect.y0 : rect.y1, rect.x0 : rect.x1] for n, a in frame.items()}
        write_exr(path, [("", cut, {})])
        out.append((rect, path))
    return out


def test_exr_chunks_stitch_into_the_scenes_lossless_codec(tmp_path: Path) -> None:
    frame = {c: RNG.normal(size=(21, 30)).astype(np.float16) for c in "RGBA"}
    chunks = exr_chunks(frame, 3, tmp_path)
    out = tmp_path / "frame.exr"
    scene = OutputFormat(file_format="OPEN_EXR", color_depth="16", exr_codec="PIZ")
    stitch_chunks("exr", chunks, 30, 21, out, scene, thumbnail=tmp_path / "t.png")
    got = read_exr(out)
    assert all(np.array_equal(got.pixels[0][c], frame[c]) for c in "RGBA")
    head = OpenEXR.File(str(out), header_only=True).parts[0].header
    assert head["compression"] == OpenEXR.PIZ_COMPRESSION
    assert read_png(tmp_path / "t.png").shape == (21, 30, 4)


def test_raw_chunks_stitch_into_the_frames_passes(tmp_path: Path) -> None:
    frame = {f"ViewLayer.Combined.{c}": RNG.normal(size=(9, 8)).astype(np.float32) for c in "RGB"}
    chunks = exr_chunks(frame, 2, tmp_path)
    out = tmp_path / "000001.passes.exr"
    stitch_chunks("raw", chunks, 8, 9, out, OutputFormat(file_format="JPEG"))
    got = read_exr(out)
    assert all(np.array_equal(got.pixels[0][n], a) for n, a in frame.items())


@pytest.mark.parametrize(
    ("scene", "ext", "reader"),
    [
        (OutputFormat(file_format="TIFF", color_depth="16"), "tif", read_tiff),
        (OutputFormat(file_format="PNG", color_depth="16"), "png", read_png),
    ],
)
def test_png_chunks_stitch_into_a_lossless_display_format_exactly(
    tmp_path: Path, scene: OutputFormat, ext: str, reader
) -> None:
    w, h, n = 23, 19, 2
    frame = RNG.integers(0, 65536, size=(h, w, 4), dtype=np.uint16)
    chunks = []
    for r, c in all_chunks(n):
        rect = chunk_rect(w, h, n, r, c)
        write_png(tmp_path / f"{r}-{c}.png", frame[rect.y0 : rect.y1, rect.x0 : rect.x1])
        chunks.append((rect, tmp_path / f"{r}-{c}.png"))
    out = tmp_path / f"frame.{ext}"
    stitch_chunks("png", chunks, w, h, out, scene)
    assert np.array_equal(reader(out), frame)
    assert sorted(p.name for p in tmp_path.glob("frame*")) == [out.name]  # no stitched PNG left


def test_a_missing_chunk_is_named(tmp_path: Path) -> None:
    rect = chunk_rect(4, 4, 1, 0, 0)
    with pytest.raises(BadChunks) as err:
        stitch_chunks(
            "exr", [(rect, tmp_path / "gone.exr")], 4, 4, tmp_path / "f.exr", OutputFormat()
        )
    assert err.value.paths == [tmp_path / "gone.exr"]


def test_an_exr_frame_is_tone_mapped_for_display(tmp_path: Path) -> None:
    linear = {"R": np.full((2, 3), 0.0, np.float32), "G": np.full((2, 3), 1.0, np.float32),
              "B": np.full((2, 3), 0.214, np.float32)}  # fmt: skip
    write_exr(tmp_path / "f.exr", [("", linear, {})])
    shown = display_image(tmp_path / "f.exr")
    assert shown.dtype == np.uint8 and shown.shape == (2, 3, 4)
    assert tuple(shown[0, 0]) == (0, 255, 127, 255)  # sRGB of 0.214 is just under 0.5


def test_the_mp4_is_encoded_as_frames_come(tmp_path: Path) -> None:
    frames = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        write_png(path, np.full((15, 21, 3), i * 60, np.uint8))
        frames.append(path)
    video = Mp4Writer(tmp_path / "result.mp4", 24)
    for path in frames:
        video.add(path)
    assert video.frames == 4 and not (tmp_path / "result.mp4").exists()
    video.finish()
    count, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "result.mp4"))
    assert count == 4
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["result.mp4"]


def test_an_aborted_mp4_leaves_nothing(tmp_path: Path) -> None:
    write_png(tmp_path / "f.png", np.zeros((4, 4, 3), np.uint8))
    video = Mp4Writer(tmp_path / "result.mp4", 24)
    video.add(tmp_path / "f.png")
    video.abort()
    assert not list(tmp_path.glob("*.mp4"))


def test_a_frame_of_another_size_does_not_join_the_mp4(tmp_path: Path) -> None:
    video = Mp4Writer(tmp_path / "result.mp4", 24)
    try:
        video.add_image(np.zeros((4, 4, 3), np.uint8))
        with pytest.raises(ValueError):
            video.add_image(np.zeros((6, 4, 3), np.uint8))
    finally:
        video.abort()


def test_an_overscanned_exr_chunk_is_cropped_in_every_part(tmp_path: Path) -> None:
    w, h = 40, 30
    wanted = chunk_rect(w, h, 2, 1, 1)
    rendered = grow(wanted, w, h, 3)
    shape = (rendered.height, rendered.width)
    combined = {
        f"ViewLayer.Combined.{c}": RNG.normal(size=shape).astype(np.float32) for c in "RGBA"
    }
    depth = {"ViewLayer.Depth.Z": RNG.normal(size=shape).astype(np.float16)}
    parts = [("ViewLayer.Combined", combined, {}), ("ViewLayer.Depth", depth, {})]
    path = tmp_path / "7.raw.exr"
    write_exr(path, parts)
    finish_chunk(path, rendered, wanted, "raw")
    got = read_exr(path)
    box = Rect(wanted.x0 - rendered.x0, wanted.y0 - rendered.y0,
               wanted.x1 - rendered.x0, wanted.y1 - rendered.y0)  # fmt: skip
    assert (got.width, got.height) == (wanted.width, wanted.height)
    for (_, chans, _), mine in zip(parts, got.pixels, strict=True):
        for name, values in chans.items():
            assert np.array_equal(mine[name], values[box.y0 : box.y1, box.x0 : box.x1])


def test_a_damaged_exr_from_blender_fails_the_chunk(tmp_path: Path) -> None:
    path = tmp_path / "7.exr"
    write_exr(path, [("", {"R": np.zeros((8, 8), np.float32)}, {})])
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(BlendfarmError, match="damaged"):
        finish_chunk(path, Rect(0, 0, 8, 8), Rect(0, 0, 8, 8), "exr")
