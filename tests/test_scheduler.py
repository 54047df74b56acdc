from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from blendfarm.scheduler import Candidate, ProjectLoad, first_task, project_order, task_gives_up


def test_least_busy_project_goes_first_and_older_wins_a_tie() -> None:
    loads = [
        ProjectLoad("old", 1.0, rendering=3),
        ProjectLoad("new", 2.0, rendering=0),
        ProjectLoad("newer", 3.0, rendering=0),
    ]
    assert project_order("n", loads) == ["new", "newer", "old"]


def test_tasks_go_in_order_but_never_to_a_node_they_failed_on() -> None:
    queued = [
        Candidate(7, "a", 1, 0, 1, frozenset({"bad"})),
        Candidate(8, "a", 1, 1, 1),
        Candidate(9, "a", 2, 0, 0),
    ]
    assert first_task("good", queued) == queued[0]
    assert first_task("bad", queued) == queued[1]
    assert first_task("bad", queued[:1]) is None


def test_a_node_is_never_offered_a_project_it_is_barred_from() -> None:
    loads = [ProjectLoad("a", 1.0, 0, blocked=frozenset({"bad"})), ProjectLoad("b", 2.0, 5)]
    assert project_order("bad", loads) == ["b"]
    assert project_order("good", loads) == ["a", "b"]


@given(st.lists(st.integers(min_value=1, max_value=30), min_size=2, max_size=6))
def test_no_project_starves(sizes: list[int]) -> None:
    """Handing out tasks one by one (none finishing) serves every project within one round."""
    queued = {
        f"p{p}": [Candidate(p * 100 + i, f"p{p}", 1, 0, i) for i in range(n)]
        for p, n in enumerate(sizes)
    }
    busy = dict.fromkeys(queued, 0)
    served = []
    for _ in range(len(sizes)):
        loads = [ProjectLoad(pid, float(i), busy[pid]) for i, pid in enumerate(busy)]
        pid = next(p for p in project_order("n", loads) if queued[p])
        pick = first_task("n", queued[pid])
        assert pick is not None
        queued[pid].remove(pick)
        busy[pid] += 1
        served.append(pid)
    assert sorted(served) == sorted(busy)


def test_a_task_gives_up_after_three_nodes_or_every_node() -> None:
    assert task_gives_up(frozenset({"a", "b", "c"}), frozenset({"a", "b", "c", "d"}), 3)
    assert task_gives_up(frozenset({"a"}), frozenset({"a"}), 3)
    assert not task_gives_up(frozenset({"a"}), frozenset({"a", "b"}), 3)
