"""Which task a node gets next: fair between projects, never a task it failed or is barred from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


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


def choose_task(
    node: str, projects: Sequence[ProjectLoad], queued: Iterable[Candidate]
) -> Candidate | None:
    """The task `node` should render next, or None.

    Projects take turns: the one with the fewest tasks rendering right now goes first, the
    older one on a tie, so a big project never starves a small one. Inside a project tasks go
    in frame, row, column order. A node never gets a task that already failed on it, nor a
    task of a project it is blocklisted for.
    """
    by_project: dict[str, list[Candidate]] = {}
    for cand in queued:
        if node in cand.failed_on:
            continue
        by_project.setdefault(cand.project_id, []).append(cand)
    order = sorted(
        (p for p in projects if p.project_id in by_project and node not in p.blocked),
        key=lambda p: (p.rendering, p.created, p.project_id),
    )
    if not order:
        return None
    tasks = by_project[order[0].project_id]
    return min(tasks, key=lambda t: (t.frame, t.row, t.col, t.task_id))


def task_gives_up(failed_nodes: frozenset[str], online_nodes: frozenset[str], limit: int) -> bool:
    """A task that failed on `limit` nodes, or on every node there is, errors its project."""
    if len(failed_nodes) >= limit:
        return True
    return bool(online_nodes) and online_nodes <= failed_nodes
