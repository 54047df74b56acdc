"""A straggling chunk's second lease (its copy): made, ended, and who must stop.

When the queue has nothing for an idle node, it may render a copy of a chunk that runs
clearly longer than its project's typical chunk (`scheduler.straggler`). The copy is a second
lease on the same task row (`copy_node`, `copy_lease`, `copy_expires`, `copy_started`), added
to the task's `leases` so a result under it is taken. At most one copy is made per render of
a task (`copies`, reset when it is leased again). The first result completes the task and the
node holding the other lease is told to stop at once (`stops.StopBoard`); while both render,
either lease ending (expired, failed, handed back) leaves the task rendering under the other.

These functions work inside the caller's transaction (`tasks_store.TaskStore`).
"""

from __future__ import annotations

import secrets
import sqlite3

import msgspec

from ..states import TaskEvent, TaskState, task_move
from .leasing import straggling
from .rows import TaskRow, task_row

# A task's copy forgotten (its count of copies is kept: one per render).
NO_COPY = "copy_node = NULL, copy_lease = NULL, copy_expires = NULL, copy_started = NULL"


def make_copy(
    db: sqlite3.Connection, now: float, node: str, order: list[str], lease_seconds: float
) -> TaskRow | None:
    """A second lease for `node` on a straggling chunk of a project in `order` (best first),
    as `node` sees it (`node`, `lease`, `started` are the copy's); None when none straggles."""
    found = straggling(db, now, node, order)
    if found is None:
        return None
    state = task_move(TaskState.RENDERING, TaskEvent.DUPLICATE)
    lease, until = secrets.token_hex(12), now + lease_seconds
    cur = db.execute(
        "UPDATE tasks SET state = ?, copy_node = ?, copy_lease = ?, copy_expires = ?,"
        " copy_started = ?, copies = copies + 1, leases = json_insert(leases, '$[#]', ?)"
        " WHERE id = ? AND state = ? AND copies = 0",
        (state.value, node, lease, until, now, lease, found.task_id, TaskState.RENDERING.value),
    )
    if cur.rowcount == 0:
        return None
    task = task_row(db.execute("SELECT * FROM tasks WHERE id = ?", (found.task_id,)).fetchone())
    return msgspec.structs.replace(task, node=node, lease=lease, lease_expires=until, started=now)


def end_one(db: sqlite3.Connection, task: TaskRow, lease: str | None) -> bool:
    """When `task` renders under two leases, end `lease` and keep it rendering under the other
    (the copy takes the task's place when `lease` was the task's own); False, with nothing
    written, when it does not render under two or `lease` is neither."""
    if task.state is not TaskState.RENDERING or task.copy_lease is None or lease is None:
        return False
    state = task_move(task.state, TaskEvent.COPY_ENDS)
    if lease == task.lease:
        db.execute(
            "UPDATE tasks SET state = ?, node = copy_node, lease = copy_lease,"
            f" lease_expires = copy_expires, started = copy_started, {NO_COPY} WHERE id = ?",
            (state.value, task.id),
        )
    elif lease == task.copy_lease:
        db.execute(f"UPDATE tasks SET state = ?, {NO_COPY} WHERE id = ?", (state.value, task.id))
    else:
        return False
    return True


def holds(task: TaskRow, lease: str) -> bool:
    """Whether `task` renders under `lease` now (its own lease or its copy's)."""
    return (
        task.state is TaskState.RENDERING and bool(lease) and lease in (task.lease, task.copy_lease)
    )


def other_holders(task: TaskRow, lease: str | None) -> list[str]:
    """The nodes rendering `task` under a lease other than `lease` (whose result finished
    it): they must stop now."""
    if task.state is not TaskState.RENDERING:
        return []
    held = ((task.node, task.lease), (task.copy_node, task.copy_lease))
    return [node for node, other in held if node and other and other != lease]
