"""Making files durable before the database records them, many at a time (group commit).

Every chunk file must be on the disk before the database says the chunk is done (a power cut
must never leave a "done" chunk with an empty file). One fsync per file and folder costs about
as much as the rest of taking a chunk together, so results arriving at once share one flush:
the first writer to find no flush running flushes everything written so far (one `syncfs` of
the data disk where Linux has it, else an fsync of each file and folder) while the others wait
for it, and the next flush takes whatever arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..atomic import fsync_file


def _syncfs_function() -> object | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        return getattr(libc, "syncfs", None)
    except OSError:
        return None


_SYNCFS = _syncfs_function()


@dataclass
class _Ticket:
    path: Path
    done: bool = False
    error: BaseException | None = None


class GroupSync:
    """Waits until a file (and its folder entry) is on the disk, sharing flushes between
    threads. `root` is any folder on the disk being written (the data dir)."""

    def __init__(self, root: Path):
        self.root = root
        self._cond = threading.Condition()
        self._pending: list[_Ticket] = []
        self._flushing = False
        self.flushes = 0  # how many flushes ran (for tests and benchmarks)

    def sync(self, path: Path) -> None:
        """Return once `path` is durable; the flush's OSError if it failed."""
        ticket = _Ticket(path)
        with self._cond:
            self._pending.append(ticket)
            while not ticket.done:
                if self._flushing:
                    self._cond.wait()
                    continue
                self._flushing = True
                batch, self._pending = self._pending, []
                self._cond.release()
                error: BaseException | None = None
                try:
                    self._flush([t.path for t in batch])
                except BaseException as exc:  # handed to every writer of the batch
                    error = exc
                finally:
                    self._cond.acquire()
                    for t in batch:
                        t.done, t.error = True, error
                    self._flushing = False
                    self.flushes += 1
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def flush(self, paths: list[Path]) -> None:
        """Flush `paths` now, in the calling thread (AsyncGroupSync's flushes)."""
        self._flush(paths)
        with self._cond:
            self.flushes += 1

    def _flush(self, paths: list[Path]) -> None:
        if _SYNCFS is not None and len(paths) > 1:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _SYNCFS(fd) == 0:  # type: ignore[operator]
                    return
            finally:
                os.close(fd)
        for path in paths:
            fsync_file(path)


class AsyncGroupSync:
    """The same shared flushes for the event loop: `await sync(path)` returns once the file is
    on the disk. Paths awaited while a flush runs share the next one, and only the flush
    itself leaves the loop (one worker-thread hop per flush, not per file): the result
    route takes small chunks without any thread hop of its own."""

    def __init__(self, group: GroupSync):
        self.group = group
        self._pending: list[tuple[Path, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def sync(self, path: Path) -> None:
        """Return once `path` is durable; the flush's OSError if it failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((path, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_all())
        await asyncio.shield(done)  # a client gone meanwhile does not cancel others' flush

    async def _flush_all(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(None, self.group.flush, [path for path, _ in batch])
            except Exception as exc:  # handed to every writer of the batch
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)
