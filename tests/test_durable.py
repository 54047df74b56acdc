"""Chunk files are made durable in shared flushes (group commit), never skipped."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from blendfarm.server.durable import GroupSync


def test_writers_at_once_share_flushes_and_each_returns_only_after_one(tmp_path: Path) -> None:
    group = GroupSync(tmp_path)
    flushed: set[Path] = set()
    real = group._flush
    gate = threading.Event()

    def slow_flush(paths: list[Path]) -> None:
        gate.wait(5)  # the first flush is slow: the others pile up behind it
        real(paths)
        flushed.update(paths)

    group._flush = slow_flush  # type: ignore[method-assign]
    returned: list[Path] = []

    def write(i: int) -> None:
        path = tmp_path / f"{i}.png"
        path.write_bytes(b"x" * 100)
        group.sync(path)
        assert path in flushed  # never back before its own flush finished
        returned.append(path)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(10)
    assert len(returned) == 20
    assert group.flushes < 20  # most writers were covered by another's flush


def test_a_failed_flush_fails_every_writer_it_covered(tmp_path: Path) -> None:
    group = GroupSync(tmp_path)
    with pytest.raises(FileNotFoundError):
        group.sync(tmp_path / "never-written.png")
    path = tmp_path / "ok.png"
    path.write_bytes(b"x")
    group.sync(path)  # the next flush works again
