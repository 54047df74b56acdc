"""The farm's SQLite file (WAL): one writing connection behind one lock, a reading connection
per thread, transactions, key-value meta.

The stores (projects, tasks, nodes) share one `Database`: every change runs in
`transaction()` under the one lock, so the server's threads see a consistent farm; reads
outside a transaction see the last committed state without waiting for the lock; and
`version` grows on every committed change (the event stream watches it). Transactions nest:
an inner one is a savepoint of the outer, so an operation can span several stores atomically.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .migrations import migrate

Clock = Callable[[], float]
BACKSTOP_PAGES = 16384  # WAL pages (64 MiB) after which a commit checkpoints by itself


class Database:
    """One SQLite writer behind one lock, readers per thread; `clock` is the time every store
    uses."""

    def __init__(self, path: Path, clock: Clock = time.time):
        self.path = path
        self.clock = clock
        self.version = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._writer: int | None = None  # the thread inside a transaction, if any
        self._readers = threading.local()  # each thread's read-only connection
        self._reader_list: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._depth = 0
        self._changed = False
        # What to call once the transaction commits, with the depth that asked for it.
        self._after: list[tuple[int, Callable[[], None]]] = []
        self._checkpointer: sqlite3.Connection | None = None
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # Checkpoints (which fsync) run in `checkpoint()` off the lock; this is a backstop.
            self._db.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            try:
                migrate(self._db)
            except BaseException:
                self._db.close()
                raise
            if self._meta("server_id") is None:
                self.new_server_id()

    def close(self) -> None:
        with self._lock:
            with self._readers_lock:
                for reader in self._reader_list:
                    reader.close()
                self._reader_list.clear()
            self._db.close()
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file (fsyncs included) on a connection of
        its own, without the lock: writers go on meanwhile. Call it from one thread."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, check_same_thread=False)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def transaction(self, changes: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work. `changes=False` for writes nobody watches (lease renewals,
        sizes); call `changed()` inside when such a transaction turns out to change the farm."""
        with self._lock:
            outer = self._depth == 0
            savepoint = f"sp{self._depth}"
            self._db.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
            if outer:
                self._changed = False
                self._writer = threading.get_ident()
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._depth -= 1
                if outer:
                    self._writer = None
                    self._after.clear()
                    self._db.execute("ROLLBACK")
                else:
                    self._db.execute(f"ROLLBACK TO {savepoint}")
                    self._db.execute(f"RELEASE {savepoint}")
                    # What the rolled-back part asked to do after the commit is not done.
                    self._after = [(d, c) for d, c in self._after if d <= self._depth]
                raise
            self._depth -= 1
            if changes:
                self._changed = True
            if not outer:
                self._db.execute(f"RELEASE {savepoint}")
                return
            self._writer = None
            try:
                self._db.execute("COMMIT")
            except BaseException:
                self._after.clear()
                raise
            if self._changed:
                self.version += 1
            after, self._after = self._after, []
        for _depth, call in after:
            call()

    def after_commit(self, call: Callable[[], None]) -> None:
        """Call `call` once the running transaction has committed (at once outside one; never
        when it, or the savepoint that asked, rolls back): telling other threads about a
        change they can then read."""
        with self._lock:
            if self._writer == threading.get_ident():
                self._after.append((self._depth, call))
                return
        call()

    def changed(self) -> None:
        """Count the running transaction as a change (bumps `version` when it commits)."""
        self._changed = True

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads that see one committed state of the farm (a read
        transaction on the thread's own connection: WAL readers never wait for the writer,
        and the writer never waits for them, so a long status read holds no lease back).
        Inside a transaction, that transaction's connection: it sees its own changes."""
        if self._writer == threading.get_ident():
            yield self._db
            return
        reader = self._reader()
        depth: int = getattr(self._readers, "depth", 0)
        if depth == 0:
            reader.execute("BEGIN")
        self._readers.depth = depth + 1
        try:
            yield reader
        finally:
            self._readers.depth = depth
            if depth == 0:
                reader.execute("COMMIT")

    def _reader(self) -> sqlite3.Connection:
        reader: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if reader is None:
            reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            reader.row_factory = sqlite3.Row
            reader.execute("PRAGMA query_only=ON")
            self._readers.db = reader
            with self._readers_lock:
                self._reader_list.append(reader)
        return reader

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def server_id(self) -> str:
        return self.get_meta("server_id") or ""

    def new_server_id(self) -> None:
        """Take a new identity (after a purge: nodes drop what they cached from the old one)."""
        self.set_meta("server_id", secrets.token_hex(8))

    def get_meta(self, key: str) -> str | None:
        with self.read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
