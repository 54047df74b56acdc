"""Which task a node gets next: higher priority first, fair between projects of equal priority,
only projects whose required tags the node has, never a task it failed or is barred from; and
the order in which an animation's frames render (preview first)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_PRIORITY = 50
MIN_PRIORITY, MAX_PRIORITY = 0, 100


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


def project_order(
    node: str, projects: Sequence[ProjectLoad], node_tags: frozenset[str] = frozenset()
) -> list[str]:
    """The projects `node` should take work from, best first.

    A higher priority always goes first. Among equal priorities projects take turns: the one
    with the fewest tasks rendering right now goes first, the older one on a tie, so a big
    project never starves a small one. Projects the node is blocklisted for, or that need a
    tag the node does not have, are left out.
    """
    usable = [p for p in projects if node not in p.blocked and p.require_tags <= node_tags]
    return [
        p.project_id
        for p in sorted(usable, key=lambda p: (-p.priority, p.rendering, p.created, p.project_id))
    ]


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
