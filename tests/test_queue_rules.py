"""The queue's pure rules: priority order, tags, preview-first frame order, ETA ranges and
sleep schedules."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blendfarm.rest_hours import parse_schedule, resting
from blendfarm.scheduler import FrameOrder, ProjectLoad, frame_ranks, parse_tags, project_order
from blendfarm.timing import duration_text, eta_range, frame_seconds, quantile, throughput


def test_priority_comes_before_fair_sharing() -> None:
    loads = [
        ProjectLoad("old-low", 1.0, 0, priority=10),
        ProjectLoad("busy-high", 3.0, 5, priority=90),
        ProjectLoad("idle-high", 4.0, 0, priority=90),
        ProjectLoad("mid", 2.0, 0),
    ]
    assert project_order("n", loads) == ["idle-high", "busy-high", "mid", "old-low"]


def test_a_project_needing_tags_goes_only_to_nodes_with_all_of_them() -> None:
    loads = [ProjectLoad("gpu", 1.0, 0, require_tags=frozenset({"gpu", "big-ram"}))]
    assert project_order("n", loads, frozenset({"gpu"})) == []
    assert project_order("n", loads, frozenset({"gpu", "big-ram", "x"})) == ["gpu"]


def test_tags_are_plain_lower_case_words() -> None:
    assert parse_tags(" GPU, big-ram,,") == {"gpu", "big-ram"}
    with pytest.raises(ValueError, match="tag"):
        parse_tags("two words")


@given(st.lists(st.integers(-1000, 1000), unique=True, min_size=1, max_size=300).map(sorted))
def test_preview_order_is_first_last_middle_then_the_rest_in_order(frames: list[int]) -> None:
    ranks = frame_ranks(frames, FrameOrder.PREVIEW)
    ordered = sorted(frames, key=ranks.__getitem__)
    assert sorted(ordered) == frames  # every frame once
    head = list(dict.fromkeys([frames[0], frames[-1], frames[len(frames) // 2]]))
    assert ordered[: len(head)] == head
    assert ordered[len(head) :] == [f for f in frames if f not in head]
    assert frame_ranks(frames, FrameOrder.SEQUENTIAL) == {f: i for i, f in enumerate(frames)}


def test_eta_is_a_range_from_measured_chunk_times_and_working_nodes() -> None:
    assert eta_range([], 10, 2) is None  # nothing measured yet
    assert eta_range([5.0], 10, 0) is None  # no node works on it
    assert eta_range([5.0], 0, 0) == (0.0, 0.0)
    assert eta_range([10.0, 10.0], 5, 2) == (30.0, 30.0)  # three rounds of two nodes
    low, high = eta_range([1.0, 2.0, 3.0, 100.0], 4, 1)  # type: ignore[misc]
    assert low < high and low == 4 * quantile([1.0, 2.0, 3.0, 100.0], 0.25)


def test_frame_times_sum_their_chunks_and_throughput_counts_the_last_hour() -> None:
    assert frame_seconds([(2, 1.0), (1, 3.0), (2, 4.0)]) == {1: 3.0, 2: 5.0}
    assert throughput([100.0, 3000.0, 3700.0, 9999.0], now=3700.0) == 3.0
    assert [duration_text(s) for s in (5, 125, 7500)] == ["5 s", "2 min", "2 h 05 min"]


MONDAY_NOON = datetime(2026, 11, 23, 12, 0)
SATURDAY_NOON = datetime(2026, 11, 28, 12, 0)


def test_a_node_rests_inside_its_off_hours_and_works_outside_them() -> None:
    rules = parse_schedule("mon-fri 09:00-18:00 off")
    assert resting(rules, MONDAY_NOON)
    assert not resting(rules, MONDAY_NOON.replace(hour=18))
    assert not resting(rules, SATURDAY_NOON)


def test_off_hours_may_run_past_midnight_and_rules_add_up() -> None:
    rules = parse_schedule("fri 22:00-06:00 off; sat,sun 10:00-11:00")
    assert resting(rules, datetime(2026, 11, 27, 23, 30))  # Friday night
    assert resting(rules, datetime(2026, 11, 28, 5, 59))  # Saturday early: still Friday's
    assert not resting(rules, datetime(2026, 11, 28, 6, 0))
    assert resting(rules, datetime(2026, 11, 29, 10, 30))  # Sunday
    assert parse_schedule("") == []


@pytest.mark.parametrize(
    "text", ["mon-fri", "someday 09:00-10:00", "mon 25:00-26:00", "mon 09:00-09:00"]
)
def test_a_schedule_that_is_not_one_is_a_sentence(text: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(text)
