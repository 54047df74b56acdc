"""The project and task state machines, as tables over plain values.

A state changes only through `task_move` or `project_move`: the store reads the current state
inside its transaction, asks this module for the next one and writes what it answers. A move
that is not in a table is a bug in the caller, raised as `IllegalTransition`; code that serves
a person's request (retry a project that is not in error, ...) checks first and answers with a
`Conflict` itself.

New states (`paused`, `cancelled`) are new rows in these tables and new members of the sets
below, not new code paths in the store.
"""

from __future__ import annotations

from enum import StrEnum


class IllegalTransition(RuntimeError):
    """A state machine was asked for a move its table does not have (a bug, never user input)."""


class ProjectState(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    COMPOSITING = "compositing"
    DONE = "done"
    ERROR = "error"
    PAUSED = "paused"  # hands out no chunk; those rendering finish and count
    CANCELLED = "cancelled"  # stopped on every node; what is done is kept; retry revives it


class TaskState(StrEnum):
    QUEUED = "queued"
    RENDERING = "rendering"
    DONE = "done"


class TaskKind(StrEnum):
    PROBE = "probe"  # read the scene's size, frame range and rate with real Blender
    CHUNK = "chunk"  # render one chunk of one frame
    # Denoise and composite one whole frame from its stitched raw chunks (the frame's passes);
    # made when the frame's raw chunks are all in, it moves as a chunk does.
    FINISH = "finish"


class TaskEvent(StrEnum):
    LEASE = "lease"  # a node takes the task
    COMPLETE = "complete"  # its result arrived (possibly late, possibly twice)
    FAIL = "fail"  # its node reports a failure
    EXPIRE = "expire"  # its lease ran out
    RELEASE = "release"  # its node hands it back unfinished
    REJECT = "reject"  # its (probe) result was refused: back to the queue for a later retry
    RETRY = "retry"  # its project is retried
    LOST = "lost"  # its result's file is missing or damaged on the server: render it again
    CANCEL = "cancel"  # its project was cancelled: nodes rendering it are told to stop
    REQUEUE = "requeue"  # a person asks for it to be rendered again
    DUPLICATE = "duplicate"  # an idle node takes a second lease on a straggling chunk
    COPY_ENDS = "copy_ends"  # one of its two leases ends (expires, fails, is handed back)


class ProjectEvent(StrEnum):
    START = "start"  # work on it has begun: a task is rendering or a chunk is done
    RENDERED = "rendered"  # every chunk is done
    REQUEUED = "requeued"  # nothing is rendering or done any more
    FINISHED = "finished"  # compositing wrote the result
    FAILED = "failed"  # it cannot go on: a task gave up, the probe or compositing failed
    RETRY = "retry"  # a person puts it back to work
    PAUSE = "pause"  # a person holds it: no new chunk is handed out
    RESUME = "resume"  # a person lets a paused project go on
    CANCEL = "cancel"  # a person stops it for good (until a retry)
    REWORK = "rework"  # a person asks for part of it to be rendered again


_TASK_MOVES: dict[tuple[TaskState, TaskEvent], TaskState] = {
    (TaskState.QUEUED, TaskEvent.LEASE): TaskState.RENDERING,
    (TaskState.RENDERING, TaskEvent.COMPLETE): TaskState.DONE,
    # A result that arrives after its lease expired is still good if the task is unfinished.
    (TaskState.QUEUED, TaskEvent.COMPLETE): TaskState.DONE,
    (TaskState.DONE, TaskEvent.COMPLETE): TaskState.DONE,  # completion is idempotent
    (TaskState.RENDERING, TaskEvent.FAIL): TaskState.QUEUED,
    (TaskState.RENDERING, TaskEvent.EXPIRE): TaskState.QUEUED,
    (TaskState.RENDERING, TaskEvent.RELEASE): TaskState.QUEUED,
    (TaskState.RENDERING, TaskEvent.REJECT): TaskState.QUEUED,
    (TaskState.QUEUED, TaskEvent.REJECT): TaskState.QUEUED,  # a late result, refused
    # Retrying a project requeues what is unfinished; done tasks have no row: they are kept.
    (TaskState.QUEUED, TaskEvent.RETRY): TaskState.QUEUED,
    (TaskState.RENDERING, TaskEvent.RETRY): TaskState.QUEUED,
    (TaskState.DONE, TaskEvent.LOST): TaskState.QUEUED,
    (TaskState.RENDERING, TaskEvent.CANCEL): TaskState.QUEUED,
    (TaskState.DONE, TaskEvent.REQUEUE): TaskState.QUEUED,
    (TaskState.QUEUED, TaskEvent.REQUEUE): TaskState.QUEUED,
    # Duplicate stragglers: a rendering task may hold a second lease (its copy, on another
    # node) once per render. The first result completes it (COMPLETE, under either lease) and
    # the other node is told to stop. While both run, one lease ending leaves the task
    # rendering under the other: COPY_ENDS, never EXPIRE, FAIL or RELEASE back to the queue.
    (TaskState.RENDERING, TaskEvent.DUPLICATE): TaskState.RENDERING,
    (TaskState.RENDERING, TaskEvent.COPY_ENDS): TaskState.RENDERING,
}

_PROJECT_MOVES: dict[tuple[ProjectState, ProjectEvent], ProjectState] = {
    (ProjectState.QUEUED, ProjectEvent.START): ProjectState.RENDERING,
    (ProjectState.QUEUED, ProjectEvent.REQUEUED): ProjectState.QUEUED,
    (ProjectState.QUEUED, ProjectEvent.RENDERED): ProjectState.COMPOSITING,  # late results
    (ProjectState.QUEUED, ProjectEvent.FAILED): ProjectState.ERROR,
    (ProjectState.RENDERING, ProjectEvent.START): ProjectState.RENDERING,
    (ProjectState.RENDERING, ProjectEvent.REQUEUED): ProjectState.QUEUED,
    (ProjectState.RENDERING, ProjectEvent.RENDERED): ProjectState.COMPOSITING,
    (ProjectState.RENDERING, ProjectEvent.FAILED): ProjectState.ERROR,
    (ProjectState.COMPOSITING, ProjectEvent.RENDERED): ProjectState.COMPOSITING,
    (ProjectState.COMPOSITING, ProjectEvent.FINISHED): ProjectState.DONE,
    (ProjectState.COMPOSITING, ProjectEvent.FAILED): ProjectState.ERROR,
    # A chunk's file was found missing or damaged while compositing: it renders again.
    (ProjectState.COMPOSITING, ProjectEvent.START): ProjectState.RENDERING,
    (ProjectState.COMPOSITING, ProjectEvent.REQUEUED): ProjectState.QUEUED,
    (ProjectState.DONE, ProjectEvent.RENDERED): ProjectState.DONE,  # done is sticky
    # Error is sticky: tasks still rendering may finish, fail or expire meanwhile.
    (ProjectState.ERROR, ProjectEvent.START): ProjectState.ERROR,
    (ProjectState.ERROR, ProjectEvent.REQUEUED): ProjectState.ERROR,
    (ProjectState.ERROR, ProjectEvent.RENDERED): ProjectState.ERROR,
    (ProjectState.ERROR, ProjectEvent.FAILED): ProjectState.ERROR,
    (ProjectState.ERROR, ProjectEvent.RETRY): ProjectState.QUEUED,
    # Pause: chunks already rendering finish and count; the last one may finish the project.
    (ProjectState.QUEUED, ProjectEvent.PAUSE): ProjectState.PAUSED,
    (ProjectState.RENDERING, ProjectEvent.PAUSE): ProjectState.PAUSED,
    (ProjectState.PAUSED, ProjectEvent.START): ProjectState.PAUSED,
    (ProjectState.PAUSED, ProjectEvent.REQUEUED): ProjectState.PAUSED,
    (ProjectState.PAUSED, ProjectEvent.RENDERED): ProjectState.COMPOSITING,
    (ProjectState.PAUSED, ProjectEvent.FAILED): ProjectState.ERROR,
    (ProjectState.PAUSED, ProjectEvent.REWORK): ProjectState.PAUSED,
    (ProjectState.PAUSED, ProjectEvent.RESUME): ProjectState.QUEUED,  # then its counts decide
    # Cancel: sticky until a retry; late results are still kept.
    (ProjectState.QUEUED, ProjectEvent.CANCEL): ProjectState.CANCELLED,
    (ProjectState.RENDERING, ProjectEvent.CANCEL): ProjectState.CANCELLED,
    (ProjectState.PAUSED, ProjectEvent.CANCEL): ProjectState.CANCELLED,
    (ProjectState.CANCELLED, ProjectEvent.START): ProjectState.CANCELLED,
    (ProjectState.CANCELLED, ProjectEvent.REQUEUED): ProjectState.CANCELLED,
    (ProjectState.CANCELLED, ProjectEvent.RENDERED): ProjectState.CANCELLED,
    (ProjectState.CANCELLED, ProjectEvent.FAILED): ProjectState.CANCELLED,
    (ProjectState.CANCELLED, ProjectEvent.RETRY): ProjectState.QUEUED,
    # Requeue a part: a finished project goes back to work; its result is made again.
    (ProjectState.QUEUED, ProjectEvent.REWORK): ProjectState.QUEUED,
    (ProjectState.RENDERING, ProjectEvent.REWORK): ProjectState.QUEUED,
    (ProjectState.COMPOSITING, ProjectEvent.REWORK): ProjectState.QUEUED,
    (ProjectState.DONE, ProjectEvent.REWORK): ProjectState.QUEUED,
}

# Projects a node may take a task from.
LEASABLE: frozenset[ProjectState] = frozenset({ProjectState.QUEUED, ProjectState.RENDERING})
# Projects whose finished frames the compositor stitches.
STITCHABLE: frozenset[ProjectState] = frozenset({ProjectState.RENDERING, ProjectState.COMPOSITING})


def task_move(state: TaskState, event: TaskEvent) -> TaskState:
    """The state a task reaches from `state` on `event`; IllegalTransition when there is none."""
    try:
        return _TASK_MOVES[(state, event)]
    except KeyError:
        raise IllegalTransition(f"a {state.value} task cannot {event.value}") from None


def task_moves(event: TaskEvent) -> dict[TaskState, TaskState]:
    """Every move `event` makes: the states it applies to and where each one goes."""
    return {old: new for (old, ev), new in _TASK_MOVES.items() if ev is event}


def project_move(state: ProjectState, event: ProjectEvent) -> ProjectState:
    """The state a project reaches from `state` on `event`; IllegalTransition when there is
    none."""
    try:
        return _PROJECT_MOVES[(state, event)]
    except KeyError:
        raise IllegalTransition(f"a {state.value} project cannot take {event.value}") from None


def can_move(state: ProjectState, event: ProjectEvent) -> bool:
    """Whether `event` applies to a project in `state` (for callers that check first)."""
    return (state, event) in _PROJECT_MOVES


def progress_event(chunks_total: int, chunks_done: int, tasks_rendering: int) -> ProjectEvent:
    """What a project's task counts say happened: every chunk done, work begun, or none left.

    A project whose probe is still open (its chunks are being created) is not rendered yet,
    even when every chunk made so far is done."""
    if chunks_total and chunks_done == chunks_total and not tasks_rendering:
        return ProjectEvent.RENDERED
    if tasks_rendering or chunks_done:
        return ProjectEvent.START
    return ProjectEvent.REQUEUED
