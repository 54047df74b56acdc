"""Time on the farm, as pure functions: a project's ETA range from its measured chunk times,
per-frame render times, and the farm's throughput."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by linear interpolation; `values` must not be empty."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def eta_range(
    chunk_seconds: Sequence[float], remaining: int, workers: int
) -> tuple[float, float] | None:
    """(soonest, latest) seconds until `remaining` chunks are rendered by `workers` nodes,
    from the render times measured so far: rounds of `workers` chunks at a quick (25th
    percentile) or slow (90th percentile) chunk time. None when nothing was measured yet or
    no node works on it; (0, 0) when nothing remains."""
    if remaining <= 0:
        return (0.0, 0.0)
    if not chunk_seconds or workers <= 0:
        return None
    rounds = math.ceil(remaining / workers)
    return (rounds * quantile(chunk_seconds, 0.25), rounds * quantile(chunk_seconds, 0.9))


def frame_seconds(chunks: Iterable[tuple[int, float]]) -> dict[int, float]:
    """Render time of each frame: the sum of its chunks' times, from (frame, seconds)."""
    out: dict[int, float] = {}
    for frame, seconds in chunks:
        out[frame] = out.get(frame, 0.0) + seconds
    return dict(sorted(out.items()))


def throughput(finished: Iterable[float], now: float, window: float = 3600.0) -> float:
    """Chunks per hour finished in the last `window` seconds before `now`."""
    count = sum(1 for t in finished if now - window <= t <= now)
    return count * 3600.0 / window


def duration_text(seconds: float) -> str:
    """'45 s', '12 min', '3 h 05 min'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
