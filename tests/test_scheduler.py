from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blendfarm.errors import Conflict
from blendfarm.scheduler import Candidate, ProjectLoad, choose_task, task_gives_up
from blendfarm.states import Event, ProjectState, TaskState, project_state, task_move


def cands(pid: str, n: int, start: int = 0) -> list[Candidate]:
    return [Candidate(start + i, pid, 1, i // 2, i % 2) for i in range(n)]


def test_least_busy_project_goes_first() -> None:
    loads = [ProjectLoad("old", 1.0, rendering=3), ProjectLoad("new", 2.0, rendering=0)]
    pick = choose_task("n", loads, cands("old", 4) + cands("new", 4, 100))
    assert pick is not None and pick.project_id == "new"


def test_older_project_wins_a_tie_and_tasks_go_in_order() -> None:
    loads = [ProjectLoad("b", 2.0, 0), ProjectLoad("a", 1.0, 0)]
    queued = [
        Candidate(9, "a", 2, 0, 0),
        Candidate(8, "a", 1, 1, 1),
        Candidate(7, "a", 1, 0, 1),
        Candidate(1, "b", 1, 0, 0),
    ]
    pick = choose_task("n", loads, queued)
    assert pick == Candidate(7, "a", 1, 0, 1)


def test_a_node_never_gets_a_task_it_failed_or_a_project_it_is_barred_from() -> None:
    loads = [ProjectLoad("a", 1.0, 0, blocked=frozenset({"bad"})), ProjectLoad("b", 2.0, 5)]
    queued = [
        Candidate(1, "a", 1, 0, 0),
        Candidate(2, "b", 1, 0, 0, frozenset({"bad"})),
        Candidate(3, "b", 1, 0, 1),
    ]
    assert choose_task("bad", loads, queued) == Candidate(3, "b", 1, 0, 1)
    assert choose_task("good", loads, queued) == Candidate(1, "a", 1, 0, 0)
    assert choose_task("bad", loads, queued[:2]) is None


@given(st.lists(st.integers(min_value=1, max_value=30), min_size=2, max_size=6))
def test_no_project_starves(sizes: list[int]) -> None:
    """Handing out tasks one by one (none finishing) serves every project within one round."""
    queued = [
        Candidate(p * 100 + i, f"p{p}", 1, 0, i) for p, n in enumerate(sizes) for i in range(n)
    ]
    busy = {f"p{p}": 0 for p in range(len(sizes))}
    first_served: dict[str, int] = {}
    for step in range(len(sizes)):
        loads = [ProjectLoad(pid, float(i), busy[pid]) for i, pid in enumerate(busy)]
        pick = choose_task("n", loads, queued)
        assert pick is not None
        queued.remove(pick)
        busy[pick.project_id] += 1
        first_served.setdefault(pick.project_id, step)
    assert set(first_served) == set(busy)


def test_a_task_gives_up_after_three_nodes_or_every_node() -> None:
    assert task_gives_up(frozenset({"a", "b", "c"}), frozenset({"a", "b", "c", "d"}), 3)
    assert task_gives_up(frozenset({"a"}), frozenset({"a"}), 3)
    assert not task_gives_up(frozenset({"a"}), frozenset({"a", "b"}), 3)


def test_task_moves() -> None:
    assert task_move(TaskState.QUEUED, Event.LEASE) is TaskState.RENDERING
    assert task_move(TaskState.RENDERING, Event.EXPIRE) is TaskState.QUEUED
    assert task_move(TaskState.QUEUED, Event.COMPLETE) is TaskState.DONE  # late result
    assert task_move(TaskState.DONE, Event.COMPLETE) is TaskState.DONE  # idempotent
    with pytest.raises(Conflict):
        task_move(TaskState.DONE, Event.LEASE)
    with pytest.raises(Conflict):
        task_move(TaskState.QUEUED, Event.FAIL)


def test_project_state_follows_its_tasks() -> None:
    assert project_state(ProjectState.QUEUED, 0, 0, 1) is ProjectState.RENDERING
    assert project_state(ProjectState.QUEUED, 4, 0, 0) is ProjectState.QUEUED
    assert project_state(ProjectState.RENDERING, 4, 4, 0) is ProjectState.COMPOSITING
    assert project_state(ProjectState.ERROR, 4, 4, 0) is ProjectState.ERROR
    assert project_state(ProjectState.DONE, 4, 4, 0) is ProjectState.DONE
