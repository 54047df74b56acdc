"""What chaos.py checks after a soak, as plain functions over what it recorded.

The records: every "rendering <title> frame F chunk R,C" line a node printed (with the wall
time it arrived, its node and the node's life: a life ends when the process is killed, stops
or exits), every life's end, and the server's task rows (read-only from its SQLite file after
the run). A chunk may be rendered more than once only when the node that rendered it before
died with that render as the last thing it started; it may never be rendered after the
server recorded it as done.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blendfarm.pngio import read_png

ChunkKey = tuple[str, int, int, int]  # project title, frame, row, column


@dataclass(frozen=True)
class Render:
    """One chunk a node started to render (its log line)."""

    t: float  # wall time (time.time()) the line arrived
    node: str
    life: int
    title: str
    frame: int
    row: int
    col: int

    @property
    def chunk(self) -> ChunkKey:
        return (self.title, self.frame, self.row, self.col)


@dataclass
class Life:
    """One run of a node process, from its start to its kill, stop or exit."""

    node: str
    number: int
    started: float
    ended: float | None = None
    end: str = ""  # "killed" (by the soak), "stopped" (SIGTERM at the end), "exited N"


@dataclass(frozen=True)
class TaskRecord:
    """A chunk task as the server's database holds it after the run."""

    state: str
    finished: float | None
    leases: int  # leases ever handed out for it


def read_tasks(db_path: Path) -> tuple[dict[ChunkKey, TaskRecord], dict[str, int]]:
    """The chunk tasks of a stopped server's database (opened read-only), by chunk; and the
    number of probe tasks and of their leases."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT p.title, t.kind, t.frame, t.row, t.col, t.state, t.finished, t.leases"
            " FROM tasks t JOIN projects p ON p.id = t.project_id"
        ).fetchall()
    finally:
        con.close()
    chunks: dict[ChunkKey, TaskRecord] = {}
    probes = {"probes": 0, "probe_leases": 0}
    for title, kind, frame, row, col, state, finished, leases in rows:
        count = len(json.loads(leases))
        if kind == "probe":
            probes["probes"] += 1
            probes["probe_leases"] += count
            continue
        chunks[(title, frame, row, col)] = TaskRecord(state, finished, count)
    return chunks, probes


def _name(key: ChunkKey) -> str:
    title, frame, row, col = key
    return f"{title} frame {frame} chunk {row},{col}"


def account_renders(
    renders: list[Render], lives: list[Life], tasks: dict[ChunkKey, TaskRecord]
) -> dict[str, Any]:
    """Renders per chunk, and every render that breaks a rule (see the module's doc)."""
    ordered = sorted(renders, key=lambda r: r.t)
    by_chunk: dict[ChunkKey, list[Render]] = defaultdict(list)
    last_of_life: dict[tuple[str, int], Render] = {}
    for r in ordered:
        by_chunk[r.chunk].append(r)
        last_of_life[(r.node, r.life)] = r
    killed = {(life.node, life.number) for life in lives if life.end == "killed"}
    died = 0
    unexplained: list[str] = []
    after_done: list[str] = []
    beyond_leases: list[str] = []
    unseen: list[str] = []
    for key, task in sorted(tasks.items()):
        seen = by_chunk.get(key, [])
        if task.state == "done" and not seen:
            unseen.append(_name(key))
        if len(seen) > task.leases:
            beyond_leases.append(f"{_name(key)}: {len(seen)} renders, {task.leases} leases")
        if task.finished is not None:
            after_done += [
                f"{_name(key)} by {r.node} (life {r.life}) {r.t - task.finished:.2f} s after done"
                for r in seen
                if r.t > task.finished
            ]
        for r in seen[:-1]:
            if (r.node, r.life) in killed and last_of_life[(r.node, r.life)] is r:
                died += 1
            else:
                unexplained.append(
                    f"{_name(key)}: rendered by {r.node} (life {r.life}) and again by "
                    f"{', '.join(f'{x.node} (life {x.life})' for x in seen[seen.index(r) + 1 :])}"
                    " though that node did not die in the middle of it"
                )
    strangers = sorted({_name(k) for k in by_chunk if k not in tasks})
    return {
        "chunks": len(tasks),
        "chunks_done": sum(1 for t in tasks.values() if t.state == "done"),
        "renders": len(ordered),
        "rerendered_chunks": sum(1 for rs in by_chunk.values() if len(rs) > 1),
        "extra_renders": sum(len(rs) - 1 for rs in by_chunk.values() if rs),
        "extra_renders_node_died": died,
        "extra_leases": sum(max(0, t.leases - 1) for t in tasks.values()),
        "unexplained_rerenders": unexplained,
        "renders_after_done": after_done,
        "renders_beyond_leases": beyond_leases,
        "done_chunks_never_seen_rendering": unseen,
        "renders_of_unknown_chunks": strangers,
    }


def _unzip_chunks(archive: Path, dest: Path) -> dict[str, Path]:
    """The raw zip's chunks written out, by their name without the project id."""
    dest.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            key = name.split("-", 1)[1]  # <project id>-<frame>-<row>-<column>.png
            path = dest / key
            path.write_bytes(zf.read(name))
            found[key] = path
    return found


def compare_raw(a: Path, b: Path, scratch: Path) -> tuple[int, list[str]]:
    """Compare two raw zips chunk by chunk by decoded pixels (depth and alpha included):
    (chunks compared, every difference found)."""
    ka, kb = _unzip_chunks(a, scratch / "a"), _unzip_chunks(b, scratch / "b")
    problems = [f"{key}: in only one of the zips" for key in sorted(set(ka) ^ set(kb))]
    both = sorted(set(ka) & set(kb))
    for key in both:
        x, y = read_png(ka[key]), read_png(kb[key])
        if x.shape != y.shape or x.dtype != y.dtype:
            problems.append(f"{key}: {x.shape} {x.dtype} against {y.shape} {y.dtype}")
        elif not np.array_equal(x, y):
            delta = np.abs(x.astype(np.int32) - y.astype(np.int32))
            pixels = int(np.count_nonzero(delta.max(axis=2)))
            problems.append(f"{key}: {pixels} pixels differ, by up to {int(delta.max())}")
    return len(both), problems
