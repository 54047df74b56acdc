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


def project_order(node: str, projects: Sequence[ProjectLoad]) -> list[str]:
    """The projects `node` should take work from, best first.

    Projects take turns: the one with the fewest tasks rendering right now goes first, the
    older one on a tie, so a big project never starves a small one. Projects the node is
    blocklisted for are left out.
    """
    usable = [p for p in projects if node not in p.blocked]
    return [
        p.project_id for p in sorted(usable, key=lambda p: (p.rendering, p.created, p.project_id))
    ]


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
