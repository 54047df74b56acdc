"""A PNG's image data as numpy rows: its scanline filters undone and made without a loop per
pixel (the file's chunks and zlib are pngio's).

Inflated, a non-interlaced PNG's image data is, row after row, one filter-type byte and the
row's filtered bytes. Filter types 0 (none), 1 (sub: each byte minus the one a pixel to its
left) and 2 (up: minus the byte above) are undone a run of same-type rows at a time, as
running sums modulo 256 (along the row per byte of a pixel for sub, down the columns for up).
Types 3 (average) and 4 (Paeth) take each byte's predictor from the byte just rebuilt to its
left through a floor or a comparison, which no running sum expresses: `unfilter` answers None
for data with such rows, and the caller decodes it another way. `filter_up` makes type 2
rows: one subtraction per byte, and the columns of a rendered image compress well so."""

from __future__ import annotations

import numpy as np

FILTER_TYPES = 5  # none, sub, up, average, Paeth


class BadFilter(ValueError):
    pass


def unfilter(data: np.ndarray, height: int, row_bytes: int, bpp: int) -> np.ndarray | None:
    """The rows (height × row_bytes, uint8) from inflated image data of exactly
    height × (1 + row_bytes) bytes whose pixels are `bpp` bytes each (row_bytes a multiple of
    it); None when a row is of type 3 or 4. BadFilter when a row's type is none of the five."""
    raw = data.reshape(height, 1 + row_bytes)
    types = raw[:, 0]
    if int(types.max()) >= FILTER_TYPES:
        raise BadFilter("a row has no valid filter type")
    if int(types.max()) > 2:
        return None
    rows = raw[:, 1:]
    out = np.empty((height, row_bytes), np.uint8)
    bounds = [0, *(np.flatnonzero(np.diff(types)) + 1).tolist(), height]
    above = np.zeros(row_bytes, np.uint8)
    for start, stop in zip(bounds, bounds[1:], strict=False):
        kind, run, dest = int(types[start]), rows[start:stop], out[start:stop]
        if kind == 0:
            dest[...] = run
        elif kind == 1:
            count = stop - start
            np.cumsum(
                run.reshape(count, -1, bpp),
                axis=1,
                dtype=np.uint8,
                out=dest.reshape(count, -1, bpp),
            )
        else:
            np.cumsum(run, axis=0, dtype=np.uint8, out=dest)
            dest += above  # uint8: modulo 256, as the filter is
        above = out[stop - 1]
    return out


def filter_up(rows: np.ndarray, above: np.ndarray) -> np.ndarray:
    """`rows` (n × row_bytes, uint8) as filter type 2 image data, each row its type byte
    then itself minus the row above (`above` for the first: the previous block's last row,
    zeros at the top of the image)."""
    count, width = rows.shape
    out = np.empty((count, 1 + width), np.uint8)
    out[:, 0] = 2
    np.subtract(rows[0], above, out=out[0, 1:])
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out
