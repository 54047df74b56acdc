from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from blendfarm.scheduler import (
    Candidate,
    ProjectLoad,
    Running,
    first_task,
    project_order,
    straggler,
    straggles,
    task_gives_up,
    typical_chunk,
)


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


# -- the warm preference ------------------------------------------------------------------


def test_a_node_gets_the_project_it_has_loaded_where_fair_share_ties_or_is_within_one() -> None:
    loads = [
        ProjectLoad("old", 1.0, 0, content_sha="aaa"),
        ProjectLoad("new", 2.0, 1, content_sha="bbb"),
    ]
    assert project_order("n", loads) == ["old", "new"]
    assert project_order("n", loads, warm="bbb") == ["new", "old"]  # within one task
    busier = [ProjectLoad("old", 1.0, 0), ProjectLoad("new", 2.0, 2, content_sha="bbb")]
    assert project_order("n", busier, warm="bbb") == ["old", "new"]  # two more: fair share
    higher = [ProjectLoad("hi", 2.0, 5, priority=60), ProjectLoad("w", 1.0, 0, content_sha="c")]
    assert project_order("n", higher, warm="c") == ["hi", "w"]  # never against a priority


loads_strategy = st.lists(
    st.builds(
        ProjectLoad,
        project_id=st.text("abcdefgh", min_size=1, max_size=3),
        created=st.floats(0, 100),
        rendering=st.integers(0, 6),
        priority=st.sampled_from([40, 50, 60]),
        content_sha=st.sampled_from(["", "x", "y"]),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda p: p.project_id,
)


@given(loads_strategy, st.sampled_from(["", "x", "y", "z"]))
def test_a_warm_preference_never_lets_an_equal_project_wait_behind_two_more_rendering(
    loads: list[ProjectLoad], warm: str
) -> None:
    first = project_order("n", loads, warm=warm)[0]
    chosen = next(p for p in loads if p.project_id == first)
    assert chosen.priority == max(p.priority for p in loads)
    for other in loads:
        if other.priority == chosen.priority:
            assert chosen.rendering <= other.rendering + 1


@given(st.lists(st.integers(min_value=1, max_value=30), min_size=2, max_size=6))
def test_no_project_starves_while_every_node_has_the_first_one_loaded(sizes: list[int]) -> None:
    """Handing out tasks one by one (none finishing) to nodes warm on project p0 serves every
    project within two rounds, and p0 never runs two tasks ahead of another."""
    queued = {f"p{p}": n for p, n in enumerate(sizes)}
    busy = dict.fromkeys(queued, 0)
    for _ in range(2 * len(sizes)):
        loads = [
            ProjectLoad(pid, float(i), busy[pid], content_sha="warm" if pid == "p0" else "")
            for i, pid in enumerate(busy)
            if queued[pid]
        ]
        if not loads:
            break
        pid = project_order("n", loads, warm="warm")[0]
        # A task goes to p0 only while it renders at most one more than any project waiting.
        assert pid != "p0" or all(busy["p0"] <= load.rendering + 1 for load in loads)
        queued[pid] -= 1
        busy[pid] += 1
    assert all(busy[p] >= 1 for p in busy)


# -- duplicate stragglers -----------------------------------------------------------------


def test_a_projects_typical_chunk_is_the_median_once_a_few_are_done() -> None:
    assert typical_chunk([4.0, 5.0]) is None
    assert typical_chunk([4.0, 5.0, 60.0]) == 5.0


def test_a_chunk_straggles_past_one_and_a_half_times_typical_and_a_few_seconds() -> None:
    assert straggles(16.0, 10.0) and not straggles(15.0, 10.0)
    assert not straggles(4.9, 1.0) and straggles(5.1, 1.0)  # the floor
    assert not straggles(1000.0, None)  # no typical time yet


def test_an_idle_node_copies_the_longest_straggler_of_the_best_project() -> None:
    running = [
        Running(1, "a", "n1", 30.0),
        Running(2, "a", "n2", 60.0),
        Running(3, "b", "n3", 90.0),
        Running(4, "a", "n4", 3.0),
    ]
    typical = {"a": 10.0, "b": 10.0}
    assert straggler("idle", running, typical, ["a", "b"]) == running[1]
    assert straggler("idle", running, typical, ["b", "a"]) == running[2]
    assert straggler("n2", running, typical, ["a"]) == running[0]  # never its own chunk
    done = [
        Running(2, "a", "n2", 60.0, duplicated=True),
        Running(1, "a", "n1", 30.0, False, frozenset({"idle"})),
    ]
    assert straggler("idle", done, typical, ["a"]) is None  # one copy; never where it failed
    assert straggler("idle", running, typical, []) is None  # paused, cancelled, barred: none


@given(
    st.lists(
        st.builds(
            Running,
            task_id=st.integers(0, 50),
            project_id=st.sampled_from(["a", "b", "c"]),
            node=st.sampled_from(["n1", "n2", "me"]),
            seconds=st.floats(0, 100),
            duplicated=st.booleans(),
        ),
        max_size=8,
    ),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.none() | st.floats(0.1, 50)),
    st.lists(st.sampled_from(["a", "b", "c"]), unique=True),
)
def test_a_copy_is_only_ever_of_a_straggler_on_another_node(
    running: list[Running], typical: dict[str, float | None], order: list[str]
) -> None:
    pick = straggler("me", running, typical, order)
    if pick is not None:
        assert pick.node != "me" and not pick.duplicated and pick.project_id in order
        assert straggles(pick.seconds, typical.get(pick.project_id))
    else:
        assert not any(
            r.node != "me"
            and not r.duplicated
            and r.project_id in order
            and straggles(r.seconds, typical.get(r.project_id))
            for r in running
        )
