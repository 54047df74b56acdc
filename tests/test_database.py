"""The farm's database: one writer behind a lock, readers that never wait for it."""

from __future__ import annotations

import threading
from pathlib import Path

from blendfarm.server.database import Database


def test_a_read_in_progress_does_not_hold_a_writer_back(tmp_path: Path) -> None:
    db = Database(tmp_path / "farm.db")
    db.set_meta("k", "before")
    reading = threading.Event()
    written = threading.Event()
    seen: list[str | None] = []

    def long_read() -> None:
        with db.read() as conn:
            query = "SELECT value FROM meta WHERE key = 'k'"
            seen.append(conn.execute(query).fetchone()[0])
            reading.set()
            assert written.wait(10)  # the writer commits while this read is open...
            seen.append(conn.execute(query).fetchone()[0])  # ...which still sees its state

    reader = threading.Thread(target=long_read)
    reader.start()
    assert reading.wait(10)
    db.set_meta("k", "after")  # would wait for the reader if reads took the lock
    written.set()
    reader.join(10)
    assert seen == ["before", "before"]
    assert db.get_meta("k") == "after"  # a new read sees the commit
    db.close()


def test_a_read_inside_a_transaction_sees_its_own_changes(tmp_path: Path) -> None:
    db = Database(tmp_path / "farm.db")
    with db.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('k', 'mine')")
        assert db.get_meta("k") == "mine"  # not committed yet: only this transaction sees it
        with db.read() as inner:
            assert inner is conn
    assert db.get_meta("k") == "mine"
    db.close()


def test_reads_nest_on_one_thread(tmp_path: Path) -> None:
    db = Database(tmp_path / "farm.db")
    db.set_meta("k", "v")
    with db.read() as outer, db.read() as inner:
        assert inner is outer
        assert db.get_meta("k") == "v"
    db.close()


def test_work_after_a_commit_runs_once_the_outermost_transaction_commits(tmp_path: Path) -> None:
    db = Database(tmp_path / "farm.db")
    seen: list[str] = []

    def peek(tag: str) -> None:  # what another thread's connection sees at that moment
        out: list[str | None] = []
        other = threading.Thread(target=lambda: out.append(db.get_meta("k")))
        other.start()
        other.join()
        seen.append(f"{tag}:{out[0]}")

    with db.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('k', 'v1')")
        with db.transaction():  # nested: still the outer one's commit
            db.after_commit(lambda: peek("nested"))
        db.after_commit(lambda: peek("outer"))
        assert seen == []
    assert seen == ["nested:v1", "outer:v1"]  # after the commit, in order, visible to all

    try:
        with db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('k', 'v2')")
            db.after_commit(lambda: seen.append("rolled back"))
            raise RuntimeError("no")
    except RuntimeError:
        pass
    db.after_commit(lambda: seen.append("outside"))  # no transaction: at once
    assert seen[2:] == ["outside"] and db.get_meta("k") == "v1"

    with db.transaction():
        try:
            with db.transaction():  # a savepoint rolled back: its after-commit work goes too
                db.after_commit(lambda: seen.append("undone part"))
                raise RuntimeError("no")
        except RuntimeError:
            pass
        db.after_commit(lambda: seen.append("kept part"))
    assert seen[3:] == ["kept part"]
    db.close()
