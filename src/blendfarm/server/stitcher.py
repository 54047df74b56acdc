"""Stitching frames in a process of its own, off the server's interpreter lock.

Decoding chunks and encoding a frame is Python and numpy work that holds the GIL for most of
its time. In the server's process it competes with the event loop that takes the nodes'
results, and every millisecond it holds the lock is one the loop waits: on a saturated farm,
the loop's ready queue grew to hundreds of milliseconds while frames were stitched. A
worker process (one; the compositor stitches one frame at a time) does the pixels; the
compositor's thread only waits for it, without the lock.

The worker is started on the first frame, from a fork server (a clean, single-threaded
parent: forking the threaded server itself is unsafe) that has the stitching modules loaded
already. A worker that dies (killed, out of memory) is replaced and the frame stitched again
once; a second failure is the compositor's error like any other.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..compositor import stitch_chunks
from ..formats import ChunkKind, OutputFormat
from ..tiles import Rect

log = logging.getLogger("blendfarm.server")

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["blendfarm.compositor"])


class Stitcher:
    """`stitch` runs `compositor.stitch_chunks` in the worker process and returns when the
    frame is written; its exceptions (BadChunks among them) are raised here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def stitch(
        self,
        kind: ChunkKind,
        pieces: Sequence[tuple[Rect, Path]],
        width: int,
        height: int,
        out: Path,
        output: OutputFormat,
        thumbnail: Path | None = None,
        held: Mapping[Path, bytes] | None = None,
    ) -> None:
        args = (kind, list(pieces), width, height, out, output, thumbnail, dict(held or {}))
        try:
            self._worker().submit(stitch_chunks, *args).result()
        except BrokenProcessPool:
            log.warning("the stitching process died; starting another for frame %s", out.name)
            self._drop()
            self._worker().submit(stitch_chunks, *args).result()

    def close(self) -> None:
        """Stop the worker (it finishes the frame it stitches)."""
        with self._lock:
            self._closed = True
        self._drop()

    def _worker(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the stitcher is closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=_CONTEXT)
            return self._pool

    def _drop(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
