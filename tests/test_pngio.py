"""The server's check of a chunk PNG: whole, undamaged files pass without being decoded, and
any file a decoder would refuse or misread is refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import png
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blendfarm.pngio import NotAPng, check_png, read_png

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
