"""Small chunk images kept in the database instead of a file each.

A farm cutting small frames into many chunks takes hundreds of results a second, and a file
per chunk was most of what each cost: a new inode, a rename, a flush shared with the others
and a wait for it, then opening it again to stitch. A small PNG result (`SMALL_IMAGE_BYTES`)
is written in the same transaction that marks its chunk done, so the two can never disagree
(a power cut loses both or neither; a lost one renders again). Bigger results stay files in
the project's `chunks/` folder (`DataDir.chunk`).

One rule for every reader: a chunk's image in the database *is* the chunk; its files count
only when there is none. A file result clears the database's image (`drop`), and a small
result of a chunk rendered before removes the chunk's files (the route does, before it
commits). Rows go with their task (ON DELETE CASCADE): a deleted project takes its images.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..compositor import chunk_name
from ..errors import NotFound
from ..formats import CHUNK_EXTENSIONS
from .database import Database
from .files import DataDir
from .rows import TaskRow

SMALL_IMAGE_BYTES = 64 * 1024  # a PNG result this small is kept in the database


@dataclass(frozen=True)
class HeldImage:
    """A chunk's image in the database: its task's place, and a signature that changes when
    the image does (the preview pastes a chunk again only then)."""

    task_id: int
    frame: int
    row: int
    col: int
    size: int
    stored: float

    @property
    def signature(self) -> str:
        return f"db:{self.task_id}:{self.stored!r}:{self.size}"


class ChunkImages:
    """The `chunk_images` table."""

    def __init__(self, db: Database):
        self.db = db

    # -- writing (inside the transaction that completes the chunk) ---------------------------

    def put(self, db: sqlite3.Connection, task_id: int, pid: str, frame: int, data: bytes) -> None:
        db.execute(
            "INSERT OR REPLACE INTO chunk_images (task_id, project_id, frame, stored, data)"
            " VALUES (?, ?, ?, ?, ?)",
            (task_id, pid, frame, self.db.clock(), data),
        )

    @staticmethod
    def drop(db: sqlite3.Connection, task_id: int) -> None:
        db.execute("DELETE FROM chunk_images WHERE task_id = ?", (task_id,))

    # -- reading -----------------------------------------------------------------------------

    def of_frame(self, pid: str, frame: int) -> dict[tuple[int, int], bytes]:
        """The images of a frame's chunks held here, by (row, col)."""
        with self.db.read() as db:
            rows = db.execute(
                "SELECT t.row, t.col, i.data FROM chunk_images i JOIN tasks t ON t.id = i.task_id"
                " WHERE i.project_id = ? AND i.frame = ?",
                (pid, frame),
            ).fetchall()
        return {(int(r[0]), int(r[1])): bytes(r[2]) for r in rows}

    def held(self, pid: str, frame: int | None = None) -> dict[tuple[int, int, int], HeldImage]:
        """What is held for a project (of one `frame`), by (frame, row, col), without the
        images themselves."""
        only = "" if frame is None else " AND i.frame = ?"
        with self.db.read() as db:
            rows = db.execute(
                "SELECT i.task_id, i.frame, t.row, t.col, length(i.data), i.stored"
                " FROM chunk_images i JOIN tasks t ON t.id = i.task_id"
                f" WHERE i.project_id = ?{only}",
                (pid,) if frame is None else (pid, frame),
            ).fetchall()
        found = (
            HeldImage(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows
        )
        return {(h.frame, h.row, h.col): h for h in found}

    def image(self, task_id: int) -> bytes | None:
        with self.db.read() as db:
            row = db.execute(
                "SELECT data FROM chunk_images WHERE task_id = ?", (task_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def sources(
        self, data: DataDir, pid: str, tasks: Iterable[TaskRow]
    ) -> tuple[list[tuple[str, Path | int]], list[TaskRow]]:
        """Where each of `tasks`' chunks is, under its raw name (the seed's): held here (its
        task id) or its file; and the tasks whose chunk is in neither place."""
        held = self.held(pid)
        found: list[tuple[str, Path | int]] = []
        gone: list[TaskRow] = []
        for t in tasks:
            if (t.frame, t.row, t.col) in held:
                found.append((chunk_name(pid, t.frame, t.row, t.col), t.id))
                continue
            try:
                path, kind = data.find_chunk(pid, t.frame, t.row, t.col)
            except NotFound:
                gone.append(t)
                continue
            found.append((chunk_name(pid, t.frame, t.row, t.col, CHUNK_EXTENSIONS[kind]), path))
        return found, gone

    def read(self, sources: Iterable[tuple[str, Path | int]]) -> Iterator[tuple[str, Path | bytes]]:
        """`sources` with each held image read, one at a time (a project may hold many);
        one that went meanwhile is left out."""
        for name, source in sources:
            if isinstance(source, Path):
                yield name, source
            elif (image := self.image(source)) is not None:
                yield name, image

    def size_of(self, pid: str) -> int:
        with self.db.read() as db:
            row = db.execute(
                "SELECT COALESCE(SUM(length(data)), 0) FROM chunk_images WHERE project_id = ?",
                (pid,),
            ).fetchone()
        return int(row[0])
