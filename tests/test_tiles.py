from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from blendfarm.tiles import (
    Rect,
    all_chunks,
    blender_border,
    border_pixels,
    chunk_rect,
    crop_box,
    effective_size,
    grow,
)

sizes = st.integers(min_value=1, max_value=4000)


@st.composite
def frames(draw: st.DrawFn) -> tuple[int, int, int]:
    w, h = draw(sizes), draw(sizes)
    n = draw(st.integers(min_value=1, max_value=min(w, h, 64)))
    return w, h, n


@given(frames())
def test_chunks_cover_every_pixel_exactly_once(frame: tuple[int, int, int]) -> None:
    w, h, n = frame
    rects = [chunk_rect(w, h, n, r, c) for r, c in all_chunks(n)]
    assert sum(r.width * r.height for r in rects) == w * h
    assert all(r.width >= 1 and r.height >= 1 for r in rects)
    # Rows share y ranges, columns share x ranges, and they abut without gaps.
    xs = sorted({(r.x0, r.x1) for r in rects})
    ys = sorted({(r.y0, r.y1) for r in rects})
    assert xs[0][0] == 0 and xs[-1][1] == w and all(a[1] == b[0] for a, b in pairwise(xs))
    assert ys[0][0] == 0 and ys[-1][1] == h and all(a[1] == b[0] for a, b in pairwise(ys))


def test_chunk_zero_zero_is_top_left() -> None:
    assert chunk_rect(203, 157, 3, 0, 0) == Rect(0, 0, 67, 52)
    assert chunk_rect(203, 157, 3, 2, 2) == Rect(135, 104, 203, 157)
    assert chunk_rect(203, 157, 1, 0, 0) == Rect(0, 0, 203, 157)


@given(frames(), st.integers(min_value=0, max_value=300), st.data())
def test_overscan_grows_inner_edges_only_and_crops_back(
    frame: tuple[int, int, int], overscan: int, data: st.DataObject
) -> None:
    w, h, n = frame
    r, c = data.draw(st.sampled_from(all_chunks(n)))
    rect = chunk_rect(w, h, n, r, c)
    big = grow(rect, w, h, overscan)
    assert 0 <= big.x0 <= rect.x0 and rect.x1 <= big.x1 <= w
    assert 0 <= big.y0 <= rect.y0 and rect.y1 <= big.y1 <= h
    if rect.x0 == 0:
        assert big.x0 == 0
    else:
        assert big.x0 == max(0, rect.x0 - overscan)
    box = crop_box(big, rect)
    assert (box.width, box.height) == (rect.width, rect.height)

    def pixels(r: Rect) -> np.ndarray:  # each pixel holds its own index in the frame
        return np.add.outer(np.arange(r.y0, r.y1) * w, np.arange(r.x0, r.x1))

    rendered = pixels(big)
    assert np.array_equal(rendered[box.y0 : box.y1, box.x0 : box.x1], pixels(rect))


@given(frames(), st.integers(min_value=0, max_value=50), st.data())
def test_blender_border_selects_exactly_the_chunk(
    frame: tuple[int, int, int], overscan: int, data: st.DataObject
) -> None:
    w, h, n = frame
    r, c = data.draw(st.sampled_from(all_chunks(n)))
    rect = grow(chunk_rect(w, h, n, r, c), w, h, overscan)
    border = blender_border(rect, w, h)
    assert 0.0 <= border.min_x < border.max_x <= 1.0
    assert 0.0 <= border.min_y < border.max_y <= 1.0
    assert border_pixels(border, w, h) == rect


def test_bottom_row_has_border_origin_at_zero() -> None:
    border = blender_border(chunk_rect(100, 100, 2, 1, 0), 100, 100)
    assert border.min_y < 0.01 and border.max_y == pytest.approx(50.5 / 100)


def test_effective_size_respects_percentage() -> None:
    assert effective_size(203, 157, 100) == (203, 157)
    assert effective_size(203, 157, 75) == (152, 117)
    assert effective_size(1920, 1080, 50) == (960, 540)


@pytest.mark.parametrize(
    ("w", "h", "n", "r", "c"),
    [(10, 10, 0, 0, 0), (10, 10, 2, 2, 0), (10, 10, 2, 0, -1), (3, 10, 4, 0, 0), (0, 5, 1, 0, 0)],
)
def test_impossible_chunks_are_refused(w: int, h: int, n: int, r: int, c: int) -> None:
    with pytest.raises(ValueError):
        chunk_rect(w, h, n, r, c)


def test_negative_overscan_is_refused() -> None:
    with pytest.raises(ValueError):
        grow(Rect(0, 0, 1, 1), 5, 5, -1)
