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
import secrets
import threading
from contextlib import suppress
from dataclasses import dataclass, field
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
    """The same shared flushes for event loops: `await sync(path)` returns once the file is on
    the disk. One flusher thread takes every path awaited while its last flush ran and
    flushes them at once, then wakes each waiter on its own loop: the result route takes a
    small chunk without a worker-thread hop of its own. Any number of loops may use it (the
    test client runs a loop per request)."""

    def __init__(self, group: GroupSync):
        self.group = group
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    async def sync(self, path: Path) -> None:
        """Return once `path` is durable; the flush's OSError if it failed."""
        await self._wait(_Job(path))

    async def place(self, path: Path, data: bytes, replaces: list[Path] | None = None) -> None:
        """Write `data` as the file `path` (whole or not at all: a temporary sibling renamed)
        and return once it is durable, the files `replaces` removed. The flusher thread does
        the writing too: creating files costs the kernel more than the loop should wait."""
        await self._wait(_Job(path, data, replaces or []))

    async def _wait(self, job: _Job) -> None:
        job.done = asyncio.get_running_loop().create_future()
        done = job.done
        with self._cond:
            if self._closed:
                raise RuntimeError("the flusher is closed")
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="flusher", daemon=True)
                self._thread.start()
            self._cond.notify()
        await asyncio.shield(done)  # a client gone meanwhile does not cancel the flush

    def close(self) -> None:
        """Stop the flusher thread once what it was given is flushed."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            failed: dict[int, BaseException] = {}
            for job in batch:
                if job.data is not None:
                    try:
                        _write(job)
                    except Exception as exc:  # this writer's alone
                        failed[id(job)] = exc
            written = [job for job in batch if id(job) not in failed]
            try:
                if written:
                    self.group.flush([job.path for job in written])
            except Exception as exc:  # handed to every writer of the batch
                failed.update((id(job), exc) for job in written)
            for job in batch:
                assert job.done is not None
                with suppress(RuntimeError):  # its loop has closed: nobody waits any more
                    job.done.get_loop().call_soon_threadsafe(_settle, job.done, failed.get(id(job)))


@dataclass
class _Job:
    path: Path
    data: bytes | None = None  # to write as `path` first (None: it is written already)
    replaces: list[Path] = field(default_factory=list)
    done: asyncio.Future[None] | None = None


def _write(job: _Job) -> None:
    assert job.data is not None
    job.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.path.with_name(f".{job.path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(job.data)
        os.replace(tmp, job.path)
    finally:
        tmp.unlink(missing_ok=True)
    for other in job.replaces:
        other.unlink(missing_ok=True)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
