"""The project and task state machines, as plain functions over plain values."""

from __future__ import annotations

from enum import StrEnum

from .errors import Conflict


class ProjectState(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    COMPOSITING = "compositing"
    DONE = "done"
    ERROR = "error"


class TaskState(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    DONE = "done"


class TaskKind(StrEnum):
    PROBE = "probe"  # read the scene's size, frame range and rate with real Blender
    CHUNK = "chunk"  # render one chunk of one frame


class Event(StrEnum):
    LEASE = "lease"
    COMPLETE = "complete"
    FAIL = "fail"
    EXPIRE = "expire"
    RESET = "reset"


_TASK_MOVES: dict[tuple[TaskState, Event], TaskState] = {
    (TaskState.QUEUED, Event.LEASE): TaskState.RENDERING,
    (TaskState.RENDERING, Event.COMPLETE): TaskState.DONE,
    # A result that arrives after its lease expired is still good if the task is unfinished.
    (TaskState.QUEUED, Event.COMPLETE): TaskState.DONE,
    (TaskState.DONE, Event.COMPLETE): TaskState.DONE,
    (TaskState.RENDERING, Event.FAIL): TaskState.QUEUED,
    (TaskState.RENDERING, Event.EXPIRE): TaskState.QUEUED,
    (TaskState.QUEUED, Event.RESET): TaskState.QUEUED,
    (TaskState.RENDERING, Event.RESET): TaskState.QUEUED,
}


def task_move(state: TaskState, event: Event) -> TaskState:
    """The state a task reaches from `state` on `event`; Conflict when the move is not allowed."""
    try:
        return _TASK_MOVES[(state, event)]
    except KeyError:
        raise Conflict(f"a {state.value} task cannot {event.value}") from None


def project_state(
    current: ProjectState, tasks_total: int, tasks_done: int, tasks_rendering: int
) -> ProjectState:
    """The state a project is in given its task counts (error and done are sticky)."""
    if current in (ProjectState.ERROR, ProjectState.DONE):
        return current
    if tasks_total and tasks_done == tasks_total:
        return ProjectState.COMPOSITING
    if tasks_rendering or tasks_done:
        return ProjectState.RENDERING
    return ProjectState.QUEUED
