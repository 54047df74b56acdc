"""What the scheduler sees when a node asks for work: the database read into its typed inputs.

`project_order` reads the projects a node may take work from (best first, see
`scheduler.project_order`), `first_queued` the task it gets from them, and `straggling` the
chunk it may render a copy of when the queue has nothing for it (`scheduler.straggler`).
They only read, inside the caller's transaction; `tasks_store.TaskStore.lease` writes.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from datetime import datetime

from ..blendversion import can_open
from ..rest_hours import node_rests
from ..scheduler import (
    STRAGGLER_FLOOR,
    Candidate,
    ProjectLoad,
    Running,
    first_task,
    project_order,
    straggler,
    typical_chunk,
)
from ..states import LEASABLE, TaskKind, TaskState

TYPICAL_SAMPLE = 99  # done chunks read to know a project's typical chunk time (a median)


def project_order_for(
    db: sqlite3.Connection,
    now: float,
    node: str,
    max_failures: int,
    slot: str = "cpu",
    warm: str = "",
) -> list[str]:
    """The projects `node` may take work from, best first: those it can open, whose device its
    `slot` ("gpu" or "cpu") is and it is not barred from, none while it is disabled or rests;
    a project with the `warm` content (the one its Blender has loaded) has a head start."""
    barred = {"gpu": "cpu", "cpu": "gpu"}.get(slot, "gpu")
    row = db.execute(
        "SELECT blender_version, info, disabled FROM nodes WHERE name = ?", (node,)
    ).fetchone()
    if row is not None and row["disabled"]:
        return []
    schedule, node_tags = node_traits(row["info"] if row else "{}")
    if node_rests(schedule, datetime.fromtimestamp(now)):
        return []  # inside its sleep hours (the chunk it renders still finishes)
    node_version = row[0] if row else None
    leasable = sorted(s.value for s in LEASABLE)
    projects = [
        p
        for p in db.execute(
            "SELECT id, created, file_version, priority, require_tags, content_sha, tasks_busy"
            f" FROM projects WHERE state IN ({', '.join('?' * len(leasable))}) AND device != ?",
            [*leasable, barred],
        ).fetchall()
        if can_open(node_version, p["file_version"])
    ]
    if not projects:
        return []
    blocked: dict[str, set[str]] = {}
    for pid, name in db.execute(
        "SELECT project_id, node FROM node_failures WHERE failures >= ?", (max_failures,)
    ):
        blocked.setdefault(pid, set()).add(name)
    loads = [
        ProjectLoad(
            p["id"],
            p["created"],
            p["tasks_busy"],  # kept by a trigger (migrations step 9): no count over the tasks
            frozenset(blocked.get(p["id"], ())),
            p["priority"],
            tag_set(p["require_tags"]),
            p["content_sha"] or "",
        )
        for p in projects
    ]
    return project_order(node, loads, node_tags, warm)


@functools.lru_cache(maxsize=1024)
def node_traits(info: str) -> tuple[str, frozenset[str]]:
    """A node's sleep schedule and tags from its stored info (JSON), parsed once per text:
    every lease of the node reads them."""
    parsed = json.loads(info)
    return str(parsed.get("schedule") or ""), frozenset(parsed.get("tags") or ())


@functools.lru_cache(maxsize=1024)
def tag_set(stored: str) -> frozenset[str]:
    """A project's required tags from their stored JSON list, parsed once per text."""
    return frozenset(json.loads(stored))


def first_queued(
    db: sqlite3.Connection, node: str, order: list[str], max_failures: int
) -> Candidate | None:
    """The queued task `node` gets: the first of the first project in `order` that has one it
    did not fail."""
    for pid in order:
        rows = db.execute(
            "SELECT id, project_id, frame, row, col, failed_on FROM tasks"
            " WHERE project_id = ? AND state = ? ORDER BY rank, frame, row, col, id LIMIT ?",
            # A node fails at most max_failures - 1 tasks of a project it may still do.
            (pid, TaskState.QUEUED.value, max_failures + 1),
        ).fetchall()
        pick = first_task(
            node,
            (Candidate(r[0], r[1], r[2], r[3], r[4], frozenset(json.loads(r[5]))) for r in rows),
        )
        if pick is not None:
            return pick
    return None


def straggling(db: sqlite3.Connection, now: float, node: str, order: list[str]) -> Running | None:
    """The chunk `node` should render a copy of (see `scheduler.straggler`), or None.

    Only chunks that have rendered past the floor are looked at, and a project's typical
    chunk is the median of a bounded sample of its done chunks: cheap enough to ask at every
    lease that finds the queue empty."""
    running = [
        Running(r[0], r[1], r[2], now - r[3], bool(r[4]), frozenset(json.loads(r[5])))
        for r in db.execute(
            "SELECT id, project_id, node, started, copies, failed_on FROM tasks"
            " WHERE state = ? AND kind = ? AND started < ? AND copies = 0",
            (TaskState.RENDERING.value, TaskKind.CHUNK.value, now - STRAGGLER_FLOOR),
        ).fetchall()
        if r[2] is not None and r[3] is not None
    ]
    wanted = set(order)
    projects = sorted({r.project_id for r in running if r.project_id in wanted})
    if not projects:
        return None
    typical = {
        pid: typical_chunk(
            [
                r[0]
                for r in db.execute(
                    "SELECT seconds FROM tasks WHERE state = ? AND project_id = ? AND kind = ?"
                    " AND seconds IS NOT NULL LIMIT ?",
                    (TaskState.DONE.value, pid, TaskKind.CHUNK.value, TYPICAL_SAMPLE),
                )
            ]
        )
        for pid in projects
    }
    return straggler(node, running, typical, order)
