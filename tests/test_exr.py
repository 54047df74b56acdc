"""EXR chunks stitch into whole frames exactly, whatever their parts and channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendfarm.errors import BadChunks
from blendfarm.exr import is_exr, read_exr, read_rgba, stitch_exr, tone_map, write_exr
from blendfarm.tiles import all_chunks, chunk_rect


def _passes(width: int, height: int, seed: int) -> list[tuple[str, dict[str, np.ndarray], dict]]:
    """A Blender-5-like multipart frame: Combined RGBA float, a half depth pass, normals."""
    rng = np.random.default_rng(seed)

    def f32(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32) * 10

    return [
        (
            "ViewLayer.Combined",
            {f"ViewLayer.Combined.{c}": f32(height, width) for c in "RGBA"},
            {"Software": "test"},
        ),
        ("ViewLayer.Depth", {"ViewLayer.Depth.Z": f32(height, width).astype(np.float16)}, {}),
        (
            "ViewLayer.Denoising Normal",
            {f"ViewLayer.Denoising Normal.{c}": f32(height, width) for c in "XYZ"},
            {},
        ),
    ]


def _cut(frame, tiles: int, width: int, height: int, folder: Path) -> list:
    """The frame cut into chunk files, as nodes would send them."""
    out = []
    for row, col in all_chunks(tiles):
        rect = chunk_rect(width, height, tiles, row, col)
        parts = [
            (name, {n: a[rect.y0 : rect.y1, rect.x0 : rect.x1] for n, a in chans.items()}, head)
            for name, chans, head in frame
        ]
        path = folder / f"c{row}-{col}.exr"
        write_exr(path, parts)
        out.append((rect, path))
    return out


@settings(max_examples=15, deadline=None)
@given(
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    tiles=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_every_channel_of_every_part_stitches_bit_exact(
    tmp_path_factory, width, height, tiles, seed
):
    tiles = min(tiles, width, height)
    folder = tmp_path_factory.mktemp("exr")
    frame = _passes(width, height, seed)
    chunks = _cut(frame, tiles, width, height, folder)
    stitch_exr(chunks, width, height, folder / "frame.exr")
    got = read_exr(folder / "frame.exr")
    assert (got.width, got.height) == (width, height)
    assert [p.name for p in got.parts] == [name for name, _, _ in frame]
    for (_, chans, _), pixels in zip(frame, got.pixels, strict=True):
        assert set(pixels) == set(chans)
        for name, values in chans.items():
            assert pixels[name].dtype == values.dtype
            assert np.array_equal(pixels[name], values)


def test_a_single_part_file_stays_single_part(tmp_path):
    rgb = {c: np.full((4, 6), i, dtype=np.float32) for i, c in enumerate("RGB")}
    write_exr(tmp_path / "a.exr", [("", rgb, {})])
    chunks = _cut([("", rgb, {})], 2, 6, 4, tmp_path)
    stitch_exr(chunks, 6, 4, tmp_path / "frame.exr")
    got = read_exr(tmp_path / "frame.exr")
    assert len(got.parts) == 1 and set(got.pixels[0]) == {"R", "G", "B"}
    assert is_exr(tmp_path / "frame.exr")


def test_a_damaged_or_mismatched_chunk_is_named(tmp_path):
    frame = _passes(9, 9, 1)
    chunks = _cut(frame, 3, 9, 9, tmp_path)
    data = chunks[4][1].read_bytes()
    chunks[4][1].write_bytes(data[: len(data) // 2])  # cut off in transfer
    write_exr(chunks[7][1], [frame[0]])  # another layout (and size)
    with pytest.raises(BadChunks) as err:
        stitch_exr(chunks, 9, 9, tmp_path / "frame.exr")
    assert set(err.value.paths) == {chunks[4][1], chunks[7][1]}
    assert not (tmp_path / "frame.exr").exists()


def test_a_missing_chunk_is_named(tmp_path):
    chunks = _cut(_passes(6, 6, 2), 2, 6, 6, tmp_path)
    chunks[1][1].unlink()
    with pytest.raises(BadChunks) as err:
        stitch_exr(chunks, 6, 6, tmp_path / "frame.exr")
    assert err.value.paths == [chunks[1][1]]


def test_a_file_that_is_not_exr_is_refused(tmp_path):
    (tmp_path / "x.exr").write_bytes(b"\x89PNG not at all")
    with pytest.raises(ValueError, match="not an OpenEXR"):
        read_exr(tmp_path / "x.exr")


def test_the_combined_pass_is_the_colour_and_tone_mapping_is_srgb(tmp_path):
    write_exr(tmp_path / "f.exr", _passes(5, 3, 3))
    rgba = read_rgba(tmp_path / "f.exr")
    assert rgba.shape == (3, 5, 4) and rgba.dtype == np.float32
    shown = tone_map(np.array([[[0.0, 0.5, 1.0, 1.0], [2.0, -1.0, np.nan, 0.25]]], np.float32))
    assert shown.dtype == np.uint8
    assert shown[0, 0].tolist() == [0, 188, 255, 255]  # sRGB(0.5) = 0.735
    assert shown[0, 1].tolist() == [255, 0, 0, 64]
