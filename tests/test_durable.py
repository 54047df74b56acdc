"""Chunk files are made durable in shared flushes (group commit), never skipped."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from blendfarm.server.durable import AsyncGroupSync, GroupSync


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


def test_loops_awaiting_at_once_are_each_woken_after_a_flush_that_covers_them(
    tmp_path: Path,
) -> None:
    # Two event loops (the test client runs one per request) wait on one flusher.
    group = GroupSync(tmp_path)
    flushed: list[list[Path]] = []
    real = group.flush
    gate = threading.Event()

    def slow_flush(paths: list[Path]) -> None:
        gate.wait(5)
        real(paths)
        flushed.append(paths)

    group.flush = slow_flush  # type: ignore[method-assign]
    waiter = AsyncGroupSync(group)
    back: list[Path] = []

    def write(i: int) -> None:
        path = tmp_path / f"{i}.png"
        path.write_bytes(b"x")
        asyncio.run(waiter.sync(path))
        assert any(path in batch for batch in flushed)
        back.append(path)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(waiter._pending) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)  # the first flush holds one path, the five others wait behind it
    gate.set()
    for t in threads:
        t.join(10)
    waiter.close()
    assert len(back) == 6
    assert len(flushed) < 6  # shared


def test_an_awaited_flush_that_fails_raises_in_its_waiter(tmp_path: Path) -> None:
    waiter = AsyncGroupSync(GroupSync(tmp_path))
    with pytest.raises(FileNotFoundError):
        asyncio.run(waiter.sync(tmp_path / "never-written.png"))
    waiter.close()


def test_a_placed_file_is_whole_durable_and_replaces_the_old_kinds(tmp_path: Path) -> None:
    group = GroupSync(tmp_path)
    flushed: list[Path] = []
    real = group.flush

    def watch(paths: list[Path]) -> None:
        assert all(path.read_bytes() == b"new" for path in paths)  # written before the flush
        real(paths)
        flushed.extend(paths)

    group.flush = watch  # type: ignore[method-assign]
    waiter = AsyncGroupSync(group)
    dest = tmp_path / "chunks" / "1-0-0.png"
    old = tmp_path / "chunks" / "1-0-0.exr"
    old.parent.mkdir()
    old.write_bytes(b"old")
    asyncio.run(waiter.place(dest, b"new", [old]))
    waiter.close()
    assert flushed == [dest] and dest.read_bytes() == b"new"
    assert not old.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["1-0-0.png"]  # no temporary left


def test_a_placement_that_cannot_be_written_fails_alone(tmp_path: Path) -> None:
    waiter = AsyncGroupSync(GroupSync(tmp_path))
    (tmp_path / "file").write_bytes(b"")

    async def both() -> list[BaseException | None]:
        bad = waiter.place(tmp_path / "file" / "under-a-file.png", b"x")  # its folder is a file
        good = waiter.place(tmp_path / "ok.png", b"x")
        return await asyncio.gather(bad, good, return_exceptions=True)

    bad, good = asyncio.run(both())
    waiter.close()
    assert isinstance(bad, OSError) and good is None
    assert (tmp_path / "ok.png").read_bytes() == b"x"
