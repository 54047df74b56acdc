"""Which task a node gets next: higher priority first, fair between projects of equal priority,
only projects whose required tags the node has, never a task it failed or is barred from; and
the order in which an animation's frames render (preview first).

Two refinements keep nodes busy without changing who is served first:

- **Warm preference.** A node says which project content its Blender has loaded (the
  project's `content_sha`). A project with that content counts one task fewer rendering than
  it has (`WARM_HEAD_START`) and wins a tie: so it is chosen where the fewest-rendering rule
  ties or is within one task, never against a higher priority, and never when another project
  of its priority has two or more tasks fewer rendering. Fair share stays: at every lease the
  chosen project renders at most one task more than any other of its priority that wanted one.
- **Duplicate stragglers.** When the queue has nothing for a node, it may render a second copy
  of a chunk that has run clearly longer than its project's typical chunk (`straggler`); the
  first result wins and the other copy is stopped.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_PRIORITY = 50
MIN_PRIORITY, MAX_PRIORITY = 0, 100
WARM_HEAD_START = 1  # tasks a project whose content the node has loaded counts fewer
STRAGGLER_FACTOR = 1.5  # a chunk straggles past this many times its project's median chunk...
STRAGGLER_FLOOR = 5.0  # ...and past this many seconds
STRAGGLER_SAMPLES = 3  # done chunks a project needs before its typical chunk time is known


class FrameOrder(StrEnum):
    PREVIEW = "preview"  # first, last and middle frame first, then the rest in order
    SEQUENTIAL = "sequential"  # plain frame order


@dataclass(frozen=True)
class Candidate:
    """A queued task as the scheduler sees it."""

    task_id: int
    project_id: str
    frame: int
    row: int
    col: int
    failed_on: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ProjectLoad:
    """How busy a project is right now and when it came in."""

    project_id: str
    created: float
    rendering: int
    blocked: frozenset[str] = field(default_factory=frozenset)
    priority: int = DEFAULT_PRIORITY
    require_tags: frozenset[str] = field(default_factory=frozenset)
    content_sha: str = ""  # its files and .blend name, hashed ('' when unknown)


def project_order(
    node: str,
    projects: Sequence[ProjectLoad],
    node_tags: frozenset[str] = frozenset(),
    warm: str = "",
) -> list[str]:
    """The projects `node` should take work from, best first.

    A higher priority always goes first. Among equal priorities projects take turns: the one
    with the fewest tasks rendering right now goes first, the older one on a tie, so a big
    project never starves a small one. Projects the node is blocklisted for, or that need a
    tag the node does not have, are left out.

    `warm` is the content the node has loaded: a project with that content has a head start
    of `WARM_HEAD_START` task and wins a tie (see the module's docstring).
    """
    usable = [p for p in projects if node not in p.blocked and p.require_tags <= node_tags]

    def key(p: ProjectLoad) -> tuple[int, int, bool, float, str]:
        loaded = bool(warm) and p.content_sha == warm
        rendering = p.rendering - WARM_HEAD_START if loaded else p.rendering
        return (-p.priority, rendering, not loaded, p.created, p.project_id)

    return [p.project_id for p in sorted(usable, key=key)]


@dataclass(frozen=True)
class Running:
    """A chunk rendering right now, as the straggler rule sees it."""

    task_id: int
    project_id: str
    node: str
    seconds: float  # how long it has rendered so far
    duplicated: bool = False  # it already had its one copy
    failed_on: frozenset[str] = field(default_factory=frozenset)


def typical_chunk(done_seconds: Sequence[float]) -> float | None:
    """A project's typical chunk time: the median of its done chunks' times, once it has
    `STRAGGLER_SAMPLES` of them (None before: no chunk straggles yet)."""
    if len(done_seconds) < STRAGGLER_SAMPLES:
        return None
    return float(statistics.median(done_seconds))


def straggles(seconds: float, typical: float | None) -> bool:
    """Whether a chunk rendering for `seconds` runs clearly longer than its project's typical
    chunk: more than `STRAGGLER_FACTOR` times it and more than `STRAGGLER_FLOOR` seconds."""
    return typical is not None and seconds > max(STRAGGLER_FACTOR * typical, STRAGGLER_FLOOR)


def straggler(
    node: str,
    running: Iterable[Running],
    typical: Mapping[str, float | None],
    order: Sequence[str],
) -> Running | None:
    """The chunk `node` (which the queue has nothing for) should render a second copy of.

    Only chunks that straggle (`straggles`), of the projects in `order` (those the node may
    take work from, best first: `project_order` over leasable projects), never one `node`
    renders or failed, never one that already had its copy. The best project first, then the
    chunk that has run longest; None when no chunk straggles.
    """
    rank = {pid: i for i, pid in enumerate(order)}
    found = [
        r
        for r in running
        if r.project_id in rank
        and r.node != node
        and not r.duplicated
        and node not in r.failed_on
        and straggles(r.seconds, typical.get(r.project_id))
    ]
    if not found:
        return None
    return min(found, key=lambda r: (rank[r.project_id], -r.seconds, r.task_id))


def frame_ranks(frames: Sequence[int], order: FrameOrder) -> dict[int, int]:
    """Each frame's place in the render order (0 first).

    Preview order renders the first, the last and the middle frame first (a broken scene
    shows in minutes, not at frame 200), then the rest in frame order."""
    ordered = list(frames)
    if order is FrameOrder.PREVIEW and len(ordered) > 2:
        firsts = list(dict.fromkeys([ordered[0], ordered[-1], ordered[len(ordered) // 2]]))
        ordered = firsts + [f for f in ordered if f not in set(firsts)]
    return {f: i for i, f in enumerate(ordered)}


def parse_tags(text: str) -> frozenset[str]:
    """'gpu, big-ram' as {'gpu', 'big-ram'}; ValueError for a tag that is not a plain word."""
    tags = frozenset(t.strip().lower() for t in text.split(",") if t.strip())
    for tag in tags:
        if len(tag) > 32 or not all(ch.isalnum() or ch in "-_." for ch in tag):
            raise ValueError(f"a tag is 1-32 letters, digits, '-', '_' or '.', not {tag[:40]!r}")
    return tags


def first_task(node: str, queued: Iterable[Candidate]) -> Candidate | None:
    """The first of a project's queued tasks (in frame, row, column order) that did not
    already fail on `node`."""
    for cand in queued:
        if node not in cand.failed_on:
            return cand
    return None


def task_gives_up(failed_nodes: frozenset[str], online_nodes: frozenset[str], limit: int) -> bool:
    """A task that failed on `limit` nodes, or on every node there is, errors its project."""
    if len(failed_nodes) >= limit:
        return True
    return bool(online_nodes) and online_nodes <= failed_nodes
