"""The state machines as tables: every move they allow, and that everything else is a bug."""

from __future__ import annotations

import itertools

import pytest

from blendfarm.errors import BlendfarmError
from blendfarm.states import (
    LEASABLE,
    IllegalTransition,
    ProjectEvent,
    ProjectState,
    TaskEvent,
    TaskState,
    can_move,
    progress_event,
    project_move,
    task_move,
    task_moves,
)

Q, R, D = TaskState.QUEUED, TaskState.RENDERING, TaskState.DONE

TASK_TABLE = {
    (Q, TaskEvent.LEASE): R,
    (R, TaskEvent.COMPLETE): D,
    (Q, TaskEvent.COMPLETE): D,
    (D, TaskEvent.COMPLETE): D,
    (R, TaskEvent.FAIL): Q,
    (R, TaskEvent.EXPIRE): Q,
    (R, TaskEvent.RELEASE): Q,
    (R, TaskEvent.REJECT): Q,
    (Q, TaskEvent.REJECT): Q,
    (Q, TaskEvent.RETRY): Q,
    (R, TaskEvent.RETRY): Q,
    (D, TaskEvent.LOST): Q,  # its file was found missing or damaged: render it again
    (R, TaskEvent.CANCEL): Q,  # its project was cancelled: its node is told to stop
    (D, TaskEvent.REQUEUE): Q,  # a person asks for it again
    (Q, TaskEvent.REQUEUE): Q,
    (R, TaskEvent.DUPLICATE): R,  # a straggling chunk gets a second lease on an idle node
    (R, TaskEvent.COPY_ENDS): R,  # one of its two leases ends: the other still renders it
}

PQ, PR, PC, PD, PE = (
    ProjectState.QUEUED,
    ProjectState.RENDERING,
    ProjectState.COMPOSITING,
    ProjectState.DONE,
    ProjectState.ERROR,
)
PP, PX = ProjectState.PAUSED, ProjectState.CANCELLED
START, RENDERED, REQUEUED, FINISHED, FAILED, RETRY = (
    ProjectEvent.START,
    ProjectEvent.RENDERED,
    ProjectEvent.REQUEUED,
    ProjectEvent.FINISHED,
    ProjectEvent.FAILED,
    ProjectEvent.RETRY,
)
PAUSE, RESUME, CANCEL, REWORK = (
    ProjectEvent.PAUSE,
    ProjectEvent.RESUME,
    ProjectEvent.CANCEL,
    ProjectEvent.REWORK,
)
PROJECT_TABLE = {
    (PQ, START): PR,
    (PQ, REQUEUED): PQ,
    (PQ, RENDERED): PC,
    (PQ, FAILED): PE,
    (PR, START): PR,
    (PR, REQUEUED): PQ,
    (PR, RENDERED): PC,
    (PR, FAILED): PE,
    (PC, RENDERED): PC,
    (PC, FINISHED): PD,
    (PC, FAILED): PE,
    (PC, START): PR,  # a chunk's file was lost while compositing
    (PC, REQUEUED): PQ,
    (PD, RENDERED): PD,
    (PE, START): PE,
    (PE, REQUEUED): PE,
    (PE, RENDERED): PE,
    (PE, FAILED): PE,
    (PE, RETRY): PQ,
    (PQ, PAUSE): PP,
    (PR, PAUSE): PP,
    (PP, START): PP,  # chunks rendering when it was paused finish and count
    (PP, REQUEUED): PP,
    (PP, RENDERED): PC,  # ... and the last of them finishes the project
    (PP, FAILED): PE,
    (PP, REWORK): PP,
    (PP, RESUME): PQ,
    (PQ, CANCEL): PX,
    (PR, CANCEL): PX,
    (PP, CANCEL): PX,
    (PX, START): PX,  # late results are kept, the project stays cancelled
    (PX, REQUEUED): PX,
    (PX, RENDERED): PX,
    (PX, FAILED): PX,
    (PX, RETRY): PQ,
    (PQ, REWORK): PQ,
    (PR, REWORK): PQ,
    (PC, REWORK): PQ,
    (PD, REWORK): PQ,  # a finished project renders part of itself again
}


@pytest.mark.parametrize(("state", "event"), list(itertools.product(TaskState, TaskEvent)))
def test_a_task_moves_only_as_its_table_says(state: TaskState, event: TaskEvent) -> None:
    if (state, event) in TASK_TABLE:
        assert task_move(state, event) is TASK_TABLE[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match=f"{state.value} task cannot {event.value}"):
            task_move(state, event)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(ProjectState, ProjectEvent)))
def test_a_project_moves_only_as_its_table_says(state: ProjectState, event: ProjectEvent) -> None:
    assert can_move(state, event) == ((state, event) in PROJECT_TABLE)
    if (state, event) in PROJECT_TABLE:
        assert project_move(state, event) is PROJECT_TABLE[(state, event)]
    else:
        with pytest.raises(IllegalTransition):
            project_move(state, event)


def test_an_illegal_transition_is_a_bug_not_a_users_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)
    assert not issubclass(IllegalTransition, BlendfarmError)


def test_late_and_repeated_results_complete_a_task_once() -> None:
    assert task_move(Q, TaskEvent.COMPLETE) is D  # the lease ran out, the result is still good
    assert task_move(D, TaskEvent.COMPLETE) is D  # a second upload changes nothing
    with pytest.raises(IllegalTransition):
        task_move(D, TaskEvent.LEASE)  # a done task is never handed out again


def test_retrying_a_project_requeues_unfinished_tasks_and_keeps_done_ones() -> None:
    assert task_moves(TaskEvent.RETRY) == {Q: Q, R: Q}
    assert task_moves(TaskEvent.EXPIRE) == {R: Q}


def test_error_and_done_are_sticky_while_tasks_still_move() -> None:
    for event in (START, RENDERED, REQUEUED, FAILED):
        assert project_move(PE, event) is PE
    assert project_move(PD, RENDERED) is PD
    for event in (START, REQUEUED, FAILED, RETRY):
        with pytest.raises(IllegalTransition):
            project_move(PD, event)


def test_only_a_project_in_error_or_cancelled_can_be_retried() -> None:
    assert [s for s in ProjectState if can_move(s, RETRY)] == [PE, PX]


def test_paused_and_cancelled_projects_hand_out_no_work_and_cancelled_is_sticky() -> None:
    assert PP not in LEASABLE and PX not in LEASABLE
    for event in (START, RENDERED, REQUEUED, FAILED):
        assert project_move(PX, event) is PX
    for event in (PAUSE, RESUME, REWORK, FINISHED):
        assert not can_move(PX, event)


def test_cancel_stops_rendering_tasks_and_keeps_done_ones() -> None:
    assert task_moves(TaskEvent.CANCEL) == {R: Q}


def test_only_queued_and_rendering_projects_hand_out_work() -> None:
    assert LEASABLE == {PQ, PR}


@pytest.mark.parametrize(
    ("total", "done", "rendering", "event"),
    [
        (0, 0, 0, REQUEUED),  # submitted, nothing leased
        (0, 0, 1, START),  # the probe is leased
        (4, 0, 0, REQUEUED),  # probed, no chunk leased yet (or every lease ran out)
        (4, 1, 0, START),  # a chunk is done
        (4, 0, 2, START),
        (4, 4, 0, RENDERED),
        (4, 4, 1, START),  # its probe is still making chunks: not rendered yet
    ],
)
def test_a_projects_task_counts_say_what_happened(
    total: int, done: int, rendering: int, event: ProjectEvent
) -> None:
    assert progress_event(total, done, rendering) is event


def test_a_project_follows_its_tasks_from_submission_to_done() -> None:
    state = PQ
    for event in (START, REQUEUED, START, START, RENDERED, RENDERED, FINISHED):
        state = project_move(state, event)
    assert state is PD
