"""Finish tasks in the database: one per frame of raw chunks, made once they are all in.

A finish task is a row of `tasks` of kind `finish` (row and column 0): it is leased, renewed,
failed, expired and retried by the task store as a chunk is. These functions make, find and
drop them; they run inside the caller's transaction.
"""

from __future__ import annotations

import sqlite3

from ..states import TaskKind, TaskState
from .rows import TaskRow, task_row


def finish_of(db: sqlite3.Connection, pid: str, frame: int) -> TaskRow | None:
    """The finish task of a frame, if it has one."""
    row = db.execute(
        "SELECT * FROM tasks WHERE project_id = ? AND kind = ? AND frame = ?",
        (pid, TaskKind.FINISH.value, frame),
    ).fetchone()
    return None if row is None else task_row(row)


def create_finish(db: sqlite3.Connection, pid: str, frame: int) -> bool:
    """Queue the finish task of a frame (in its chunks' place in the render order); False
    when it has one already."""
    if finish_of(db, pid, frame) is not None:
        return False
    rank = db.execute(
        "SELECT COALESCE(MIN(rank), 0) FROM tasks WHERE project_id = ? AND kind = ? AND frame = ?",
        (pid, TaskKind.CHUNK.value, frame),
    ).fetchone()[0]
    db.execute(
        "INSERT INTO tasks (project_id, kind, frame, row, col, state, rank)"
        " VALUES (?, ?, ?, 0, 0, ?, ?)",
        (pid, TaskKind.FINISH.value, frame, TaskState.QUEUED.value, rank),
    )
    return True


def drop_finishes(db: sqlite3.Connection, pid: str, frames: list[int]) -> int:
    """Forget the finish tasks of frames whose chunks render again (a new one is made when
    they are all in again; a node still finishing one is told to stop at its next
    heartbeat). Returns how many were dropped."""
    dropped = 0
    for frame in frames:
        cur = db.execute(
            "DELETE FROM tasks WHERE project_id = ? AND kind = ? AND frame = ?",
            (pid, TaskKind.FINISH.value, frame),
        )
        dropped += cur.rowcount
    return dropped
