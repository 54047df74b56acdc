"""Results that arrive together are committed together.

A chunk's result costs the server one SQLite transaction, and at hundreds a second the
transaction's `BEGIN` and `COMMIT` (the write lock, the log's pages) were an eighth of the
event loop's time. The results the loop takes in one pass of its queue are now recorded in
one transaction, each in a savepoint of its own (one result's error is its own: it is rolled
back alone and answered with its error), and all are answered once it commits: an answer
never promises what the database does not hold. A result alone waits for nothing: its batch
commits in the loop's next pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from .database import Database

Work = TypeVar("Work")
Answer = TypeVar("Answer")


class GroupCommit(Generic[Work, Answer]):
    """`await submit(work)` runs `run(work)` inside the loop's shared transaction and returns
    its answer once that transaction has committed (or raises what `run` raised)."""

    def __init__(self, db: Database, run: Callable[[Work], Answer]):
        self.db = db
        self.run = run
        self._pending: dict[asyncio.AbstractEventLoop, list[_Item[Work, Answer]]] = {}
        self.batches = 0  # how many transactions ran (for tests and benchmarks)

    async def submit(self, work: Work) -> Answer:
        loop = asyncio.get_running_loop()
        item: _Item[Work, Answer] = _Item(work, loop.create_future())
        waiting = self._pending.setdefault(loop, [])
        waiting.append(item)
        if len(waiting) == 1:
            loop.call_soon(self._commit, loop)
        return await item.done

    def _commit(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        answers: list[tuple[_Item[Work, Answer], Answer]] = []
        errors: list[tuple[_Item[Work, Answer], Exception]] = []
        self.batches += 1
        try:
            with self.db.transaction(changes=False):
                for item in batch:
                    try:
                        with self.db.transaction(changes=False):  # a savepoint: its own
                            answers.append((item, self.run(item.work)))
                    except Exception as exc:
                        errors.append((item, exc))
        except Exception as exc:  # the commit failed: nothing of the batch was kept
            errors = [(item, exc) for item in batch]
            answers = []
        for item, answer in answers:
            if not item.done.done():  # else its request was cancelled (the node went away)
                item.done.set_result(answer)
        for item, error in errors:
            if not item.done.done():
                item.done.set_exception(error)


class _Item(Generic[Work, Answer]):
    __slots__ = ("work", "done")

    def __init__(self, work: Work, done: asyncio.Future[Answer]):
        self.work = work
        self.done = done
