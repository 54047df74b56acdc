"""PNG files: the server's check of a chunk PNG (whole, undamaged files pass without being
decoded, any file a decoder would refuse or misread is refused), and reading and writing
(every filter type and kind of PNG read as pypng reads it, written files read back exactly)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from blendfarm.png_file import PNG_SIGNATURE, make_chunk
from blendfarm.png_rows import BadFilter, unfilter
from blendfarm.pngio import (
    ADAM7,
    IDAT_SIZE,
    NotAPng,
    check_png,
    read_png,
    write_png,
    write_png_rows,
)

MODES = [  # (greyscale, alpha, palette, depths)
    (True, False, False, (1, 2, 4, 8, 16)),
    (True, True, False, (8, 16)),
    (False, False, False, (8, 16)),
    (False, True, False, (8, 16)),
    (False, False, True, (1, 2, 4, 8)),
]


@st.composite
def png_files(draw: st.DrawFn) -> tuple[bytes, tuple[int, int, int]]:
    """A PNG made by pypng in any of its modes, depths and interlacing; and its (width,
    height, depth)."""
    grey, alpha, palette, depths = draw(st.sampled_from(MODES))
    depth = draw(st.sampled_from(depths))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    planes = (1 if grey or palette else 3) + alpha
    top = (1 << depth) - 1
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, top + 1, (height, width * planes))
    kw: dict[str, object] = {"bitdepth": depth, "interlace": draw(st.booleans())}
    if palette:
        kw["palette"] = [(i % 256, 0, 0) for i in range(top + 1)]
    else:
        kw.update(greyscale=grey, alpha=alpha)
    buf = io.BytesIO()
    png.Writer(width, height, **kw).write(buf, pixels.tolist())
    return buf.getvalue(), (width, height, depth)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "chunk.png"
    path.write_bytes(data)
    return path


@settings(max_examples=150, deadline=None)
@given(made=png_files())
def test_a_whole_png_of_any_kind_passes_the_check(
    tmp_path_factory: pytest.TempPathFactory, made: tuple[bytes, tuple[int, int, int]]
) -> None:
    data, (width, height, depth) = made
    path = write(tmp_path_factory.mktemp("png"), data)
    assert check_png(path)[:3] == (width, height, depth)
    read_png(path)  # and a decoder agrees


@settings(max_examples=150, deadline=None)
@given(made=png_files(), cut=st.floats(0, 1, exclude_max=True))
def test_a_png_cut_off_anywhere_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
    made: tuple[bytes, tuple[int, int, int]],
    cut: float,
) -> None:
    data, _ = made
    path = write(tmp_path_factory.mktemp("png"), data[: int(len(data) * cut)])
    with pytest.raises(NotAPng):
        check_png(path)


@settings(max_examples=200, deadline=None)
@given(made=png_files(), where=st.floats(0, 1, exclude_max=True), flip=st.integers(1, 255))
def test_a_png_with_any_byte_changed_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
    made: tuple[bytes, tuple[int, int, int]],
    where: float,
    flip: int,
) -> None:
    data = bytearray(made[0])
    data[int(len(data) * where)] ^= flip
    path = write(tmp_path_factory.mktemp("png"), bytes(data))
    with pytest.raises(NotAPng):
        check_png(path)


def test_image_data_that_inflates_to_the_wrong_size_is_refused(tmp_path: Path) -> None:
    """Every chunk's CRC is right, but the image data is one row short (a node's bug, not a
    damaged transfer)."""
    buf = io.BytesIO()
    png.Writer(4, 3, greyscale=True, bitdepth=8).write(buf, [[1, 2, 3, 4]] * 3)
    whole = buf.getvalue()
    short = io.BytesIO()
    png.Writer(4, 2, greyscale=True, bitdepth=8).write(short, [[1, 2, 3, 4]] * 2)
    # The 4x3 file's header with the 4x2 file's image data.
    header_end = 8 + 25
    lying = whole[:header_end] + short.getvalue()[header_end:]
    with pytest.raises(NotAPng, match="cut off"):
        check_png(write(tmp_path, lying))
    with pytest.raises(NotAPng):
        read_png(write(tmp_path, lying))


def test_something_that_is_not_a_png_is_refused(tmp_path: Path) -> None:
    for data in (b"", b"GIF89a..", b"\x89PNG\r\n\x1a\n"):
        with pytest.raises(NotAPng):
            check_png(write(tmp_path, data))


# -- reading and writing: every decoder agrees, every filter type, every way of writing ------


def pypng_pixels(path: Path) -> np.ndarray:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    dtype = np.uint16 if info["bitdepth"] > 8 else np.uint8
    return np.vstack([np.asarray(row, dtype=dtype) for row in rows]).reshape(
        height, width, info["planes"]
    )


def filtered(data: np.ndarray, bpp: int, kinds: list[int]) -> bytes:
    """Rows of bytes (h × row bytes) as PNG image data, row y with filter kinds[y % len]
    (made as the PNG specification defines the filters, independently of pngio)."""
    x = data.astype(np.int16)
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    corner = np.zeros_like(x)
    corner[1:, bpp:] = x[:-1, :-bpp]
    p = left + up - corner
    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, corner))
    predictors = [np.zeros_like(x), left, up, (left + up) // 2, paeth]
    out = bytearray()
    for y in range(x.shape[0]):
        kind = kinds[y % len(kinds)]
        out += bytes([kind]) + ((x[y] - predictors[kind][y]) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def hand_made_png(image: np.ndarray, kinds: list[int], interlace: bool) -> bytes:
    """A PNG of `image` (uint8 or uint16, 1-4 channels) with the given row filters."""
    height, width, planes = image.shape
    deep = image.dtype == np.uint16
    bpp = planes * (2 if deep else 1)
    passes = [image[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlace else [image]
    data = b"".join(
        filtered(
            np.ascontiguousarray(sub, dtype=">u2" if deep else np.uint8)
            .view(np.uint8)
            .reshape(sub.shape[0], -1),
            bpp,
            kinds,
        )
        for sub in passes
        if sub.size
    )
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[planes]
    head = struct.pack(">IIBBBBB", width, height, 16 if deep else 8, colour, 0, 0, int(interlace))
    return (
        PNG_SIGNATURE
        + make_chunk(b"IHDR", head)
        + make_chunk(b"IDAT", zlib.compress(data))
        + make_chunk(b"IEND", b"")
    )


@st.composite
def images(draw: st.DrawFn, most: int = 40) -> np.ndarray:
    """An 8 or 16-bit image of 1-4 channels, random values (extremes often)."""
    deep = draw(st.booleans())
    planes = draw(st.integers(1, 4))
    width, height = draw(st.integers(1, most)), draw(st.integers(1, most))
    top = 65535 if deep else 255
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = rng.integers(0, top + 1, (height, width, planes))
    image[rng.random(image.shape) < 0.2] = top
    return image.astype(np.uint16 if deep else np.uint8)


@settings(max_examples=200, deadline=None)
@given(
    image=images(),
    kinds=st.lists(st.integers(0, 4), min_size=1, max_size=8),
    interlace=st.booleans(),
)
def test_every_filter_type_reads_back_the_pixels_it_was_made_from(
    tmp_path_factory: pytest.TempPathFactory, image: np.ndarray, kinds: list[int], interlace: bool
) -> None:
    path = write(tmp_path_factory.mktemp("png"), hand_made_png(image, kinds, interlace))
    assert check_png(path)[:2] == (image.shape[1], image.shape[0])
    got = read_png(path)
    assert got.dtype == image.dtype and np.array_equal(got, image)
    assert np.array_equal(pypng_pixels(path), image)  # the file is what the PNG spec says


@settings(max_examples=150, deadline=None)
@given(image=images())
def test_written_pngs_read_back_exactly_and_every_decoder_agrees(
    tmp_path_factory: pytest.TempPathFactory, image: np.ndarray
) -> None:
    path = tmp_path_factory.mktemp("png") / "w.png"
    write_png(path, image, durable=False)
    height, width, planes = image.shape
    assert check_png(path) == (
        width,
        height,
        16 if image.dtype == np.uint16 else 8,
        {1: 0, 2: 4, 3: 2, 4: 6}[planes],
    )
    got = read_png(path)
    assert got.dtype == image.dtype and np.array_equal(got, image)
    assert np.array_equal(pypng_pixels(path), image)
    if image.dtype == np.uint8:  # Pillow keeps only 8-bit samples whole
        with Image.open(path) as im:
            assert np.array_equal(np.asarray(im).reshape(image.shape), image)


@settings(max_examples=150, deadline=None)
@given(made=png_files())
def test_pngs_of_every_kind_read_as_pypng_reads_them(
    tmp_path_factory: pytest.TempPathFactory, made: tuple[bytes, tuple[int, int, int]]
) -> None:
    """Low bit depths, palettes, interlacing: the values pypng's asDirect gives."""
    path = write(tmp_path_factory.mktemp("png"), made[0])
    got, want = read_png(path), pypng_pixels(path)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_a_transparent_colour_is_read_as_an_alpha_channel(tmp_path: Path) -> None:
    buf = io.BytesIO()
    png.Writer(2, 1, greyscale=False, bitdepth=8, transparent=(1, 2, 3)).write(
        buf, [[1, 2, 3, 4, 5, 6]]
    )
    got = read_png(write(tmp_path, buf.getvalue()))
    assert got.tolist() == [[[1, 2, 3, 0], [4, 5, 6, 255]]]


def test_rows_written_one_by_one_or_in_blocks_make_the_same_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    image = rng.integers(0, 65536, (37, 11, 3), dtype=np.uint16)
    flat = image.reshape(37, 33)
    write_png(tmp_path / "whole.png", image)
    write_png_rows(tmp_path / "rows.png", 11, 37, 3, np.dtype(np.uint16), list(flat))
    write_png_rows(
        tmp_path / "blocks.png", 11, 37, 3, np.dtype(np.uint16), [flat[:5], flat[5:6], flat[6:]]
    )
    whole = (tmp_path / "whole.png").read_bytes()
    assert (tmp_path / "rows.png").read_bytes() == whole
    assert (tmp_path / "blocks.png").read_bytes() == whole
    assert np.array_equal(read_png(tmp_path / "blocks.png"), image)


def test_too_few_or_too_many_rows_are_refused_and_leave_no_file(tmp_path: Path) -> None:
    rows = [np.zeros(8, np.uint8)] * 3
    for height in (2, 4):
        with pytest.raises(ValueError, match="rows"):
            write_png_rows(tmp_path / "x.png", 4, height, 2, np.dtype(np.uint8), rows)
    assert list(tmp_path.iterdir()) == []


def test_a_big_image_is_written_in_bounded_idat_chunks(tmp_path: Path) -> None:
    """Noise does not compress: a 6 MiB image needs several IDAT chunks, none over the size."""
    image = np.random.default_rng(6).integers(0, 65536, (400, 1000, 4), dtype=np.uint16)
    write_png(tmp_path / "big.png", image, durable=False)
    data = (tmp_path / "big.png").read_bytes()
    sizes, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IDAT":
            sizes.append(length)
        pos += 12 + length
    assert len(sizes) > 1 and max(sizes) <= IDAT_SIZE
    assert np.array_equal(read_png(tmp_path / "big.png"), image)


def test_unfilter_leaves_average_and_paeth_rows_to_another_decoder() -> None:
    rows = np.zeros((2, 4), np.uint8)
    for kind, want in ((3, None), (4, None)):
        data = np.concatenate([[0], rows[0], [kind], rows[1]]).astype(np.uint8)
        assert unfilter(data, 2, 4, 1) is want
    with pytest.raises(BadFilter):
        unfilter(np.array([5, 0, 0, 0, 0], np.uint8), 1, 4, 1)
