"""Results the event loop takes at once share one commit; each answer waits for it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from blendfarm.server.database import Database
from blendfarm.server.group_commit import GroupCommit


def _committed(db: Database, key: str) -> str | None:
    with sqlite3.connect(db.path) as other:  # another connection: sees commits only
        row = other.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def test_work_taken_at_once_shares_one_commit_and_is_answered_after_it(tmp_path: Path) -> None:
    db = Database(tmp_path / "farm.db")
    seen_at_answer: dict[str, str | None] = {}

    def write(key: str) -> str:
        with db.transaction() as conn:
            conn.execute("INSERT INTO meta VALUES (?, 'v')", (key,))
        return key

    group: GroupCommit[str, str] = GroupCommit(db, write)

    async def one(key: str) -> None:
        answer = await group.submit(key)
        seen_at_answer[answer] = _committed(db, answer)

    async def main() -> None:
        await asyncio.gather(*(one(f"k{i}") for i in range(5)))
        await one("alone")  # later, by itself: its own batch

    asyncio.run(main())
    assert group.batches == 2
    assert seen_at_answer == {**{f"k{i}": "v" for i in range(5)}, "alone": "v"}
    db.close()


def test_one_failing_piece_of_work_is_rolled_back_alone(tmp_path: Path) -> None:
    db = Database(tmp_path / "farm.db")

    def write(key: str) -> str:
        db.set_meta(key, "v")
        if key == "bad":
            raise ValueError("refused")
        return key

    group: GroupCommit[str, str] = GroupCommit(db, write)

    async def main() -> list[object]:
        return await asyncio.gather(
            *(group.submit(k) for k in ("a", "bad", "b")), return_exceptions=True
        )

    a, bad, b = asyncio.run(main())
    assert (a, b) == ("a", "b") and isinstance(bad, ValueError)
    assert group.batches == 1
    assert [_committed(db, k) for k in ("a", "bad", "b")] == ["v", None, "v"]
    db.close()


def test_a_failed_commit_fails_every_answer_of_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(tmp_path / "farm.db")
    group: GroupCommit[str, str] = GroupCommit(db, lambda key: key)

    class Full(Exception):
        pass

    def full(*args: object, **kwargs: object) -> object:
        raise Full("database or disk is full")

    monkeypatch.setattr(db, "transaction", full)

    async def main() -> list[object]:
        return await asyncio.gather(*(group.submit(k) for k in "xy"), return_exceptions=True)

    assert all(isinstance(r, Full) for r in asyncio.run(main()))
    db.close()
