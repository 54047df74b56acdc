"""Random sequences of farm events through a real Store on a SQLite file, against a model.

Every step is one thing the farm does (submit, probe result, lease, complete, fail, hand
back, heartbeat, time passing, leases running out, nodes going offline, retry, delete,
compositing); after every step the store must agree with a simple model of the farm, and
the invariants of the state machines must hold.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from blendfarm.scheduler import FrameOrder, frame_ranks
from blendfarm.server.rows import NewProject, ProjectCounts
from blendfarm.server.store import Store
from blendfarm.server.validate import Plan
from blendfarm.states import IllegalTransition, ProjectState, TaskKind, TaskState

LEASE = 10.0
NODE_TIMEOUT = 15.0
MAX_FAILURES = 2
NODES = ("a", "b", "c")

Q, R, D = TaskState.QUEUED, TaskState.RENDERING, TaskState.DONE
PQ, PR, PC, PD, PE = (
    ProjectState.QUEUED,
    ProjectState.RENDERING,
    ProjectState.COMPOSITING,
    ProjectState.DONE,
    ProjectState.ERROR,
)


@dataclass
class MTask:
    id: int
    pid: str
    kind: TaskKind
    frame: int = 0
    row: int = 0
    col: int = 0
    state: TaskState = Q
    node: str | None = None
    lease: str | None = None
    expires: float | None = None
    failed_on: set[str] = field(default_factory=set)
    leases: list[str] = field(default_factory=list)


@dataclass
class MProject:
    id: str
    created: float
    frames: int
    tiles: int
    state: ProjectState = PQ
    error: str | None = None
    tasks: list[int] = field(default_factory=list)  # the probe first, then the chunks


@dataclass
class MNode:
    last_seen: float
    offline: bool = False
    chunks_done: int = 0


class FarmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="blendfarm-machine-"))
        self.now = 1000.0
        self.store = Store(self.folder / "farm.db", clock=lambda: self.now)
        self.projects: dict[str, MProject] = {}
        self.tasks: dict[int, MTask] = {}
        self.failures: Counter[tuple[str, str]] = Counter()
        self.nodes: dict[str, MNode] = {}
        self.messages = 0
        for name in NODES:
            self.store.nodes.seen(name, {"blender_version": "3.4.1"})
            self.nodes[name] = MNode(self.now)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the model ----------------------------------------------------------------------------

    def chunks(self, p: MProject) -> list[MTask]:
        return [self.tasks[t] for t in p.tasks if self.tasks[t].kind is TaskKind.CHUNK]

    def busy(self, pid: str) -> int:
        return sum(1 for t in self.projects[pid].tasks if self.tasks[t].state is R)

    def follow(self, pid: str) -> None:
        """The project's state from its task counts (error and done are sticky)."""
        p = self.projects[pid]
        if p.state in (PE, PD):
            return
        chunks = self.chunks(p)
        done = sum(1 for t in chunks if t.state is D)
        if chunks and done == len(chunks):
            p.state = PC
        elif done or self.busy(pid):
            p.state = PR
        else:
            p.state = PQ

    def blocked(self, pid: str) -> set[str]:
        return {n for n in NODES if self.failures[(pid, n)] >= MAX_FAILURES}

    def online(self) -> set[str]:
        return {n for n, m in self.nodes.items() if not m.offline}

    def seen(self, node: str) -> None:
        self.store.nodes.seen(node)
        self.nodes[node].last_seen = self.now
        self.nodes[node].offline = False

    def requeue(self, t: MTask) -> None:
        t.state, t.node, t.lease, t.expires = Q, None, None, None

    def expected_lease(self, node: str) -> MTask | None:
        live = [
            p
            for p in self.projects.values()
            if p.state in (PQ, PR) and node not in self.blocked(p.id)
        ]
        for p in sorted(live, key=lambda p: (self.busy(p.id), p.created, p.id)):
            # New projects render preview-first: first, last and middle frame, then the rest.
            rank = frame_ranks(range(1, p.frames + 1), FrameOrder.PREVIEW)
            queued = sorted(
                (self.tasks[t] for t in p.tasks if self.tasks[t].state is Q),
                key=lambda t: (rank.get(t.frame, 0), t.frame, t.row, t.col, t.id),
            )
            for t in queued:
                if node not in t.failed_on:
                    return t
        return None

    def message(self) -> str:
        self.messages += 1
        return f"Error: failure {self.messages}"

    # -- choosing -----------------------------------------------------------------------------

    def leased_tasks(self, kind: TaskKind) -> list[int]:
        return sorted(t.id for t in self.tasks.values() if t.kind is kind and t.leases)

    # -- rules --------------------------------------------------------------------------------

    @initialize(frames=st.integers(1, 3), tiles=st.integers(1, 2))
    def first_submission(self, frames: int, tiles: int) -> None:
        self.submit(frames, tiles)

    @rule(frames=st.integers(1, 3), tiles=st.integers(1, 2))
    def submit(self, frames: int, tiles: int) -> None:
        # Ids are random: a later submission must not tie with an earlier one (on a tie the
        # scheduler goes by id, and the run would not repeat).
        self.now += 0.001
        pid = self.store.projects.create(
            NewProject(
                title="shot",
                blend="scene.blend",
                sha256="0" * 64,
                archive_size=10,
                animation=frames > 1,
                frame_start=1,
                frame_end=frames,
                tiles=tiles,
                overscan=0,
                file_version="3.4",
            )
        )
        (probe,) = self.store.tasks.of_project(pid, TaskKind.PROBE)
        assert probe.state is Q
        self.projects[pid] = MProject(pid, self.now, frames, tiles, tasks=[probe.id])
        self.tasks[probe.id] = MTask(probe.id, pid, TaskKind.PROBE)

    @rule(node=st.sampled_from(NODES))
    def lease(self, node: str) -> None:
        self.take(node)

    def take(self, node: str) -> MTask | None:
        self.seen(node)
        expected = self.expected_lease(node)
        # The model has no duplicate stragglers (tests/test_stragglers.py has them): a node
        # the queue has nothing for gets nothing, even past the straggler floor.
        got = self.store.tasks.lease(node, LEASE, MAX_FAILURES, copies=False)
        assert (got and got.id) == (expected and expected.id)
        if got is None or expected is None:
            return None
        assert got.state is R and got.node == node and got.lease
        expected.state, expected.node, expected.lease = R, node, got.lease
        expected.expires = self.now + LEASE
        expected.leases.append(got.lease)
        self.follow(expected.pid)
        return expected

    @rule(node=st.sampled_from(NODES))
    def work(self, node: str) -> None:
        """A node leases a task and does it."""
        t = self.take(node)
        if t is None:
            return
        if t.kind is TaskKind.PROBE:
            self.probe(t, valid=True)
        else:
            self.finish(t)

    @rule()
    def every_node_works(self) -> None:
        """A round of the farm at work: each node leases a task and does it."""
        for node in NODES:
            self.work(node)

    @precondition(lambda self: self.leased_tasks(TaskKind.PROBE))
    @rule(data=st.data(), invalid=st.integers(0, 3))
    def probe_result(self, data: st.DataObject, invalid: int) -> None:
        t = self.tasks[data.draw(st.sampled_from(self.leased_tasks(TaskKind.PROBE)))]
        self.probe(t, valid=invalid < 3)

    def probe(self, t: MTask, valid: bool) -> None:
        p = self.projects[t.pid]
        if not valid:
            if t.state is D:
                return  # the farm answers "already done" before it reaches the store
            message = self.message()
            assert self.store.tasks.reject_probe(t.id, message)
            self.requeue(t)
            p.state, p.error = PE, message
            return
        frames = list(range(1, p.frames + 1))
        plan = Plan(31, 23, frames, len(frames) > 1, 24.0, 1.0, [])
        changed = self.store.tasks.finish_probe(t.id, plan, {"fps": 24})
        assert changed == (t.state is not D)
        if not changed:
            return
        t.state, t.lease, t.expires = D, None, None
        if not self.chunks(p):
            made = self.store.tasks.of_project(p.id)
            assert [(c.frame, c.row, c.col) for c in made] == [
                (f, r, c) for f in frames for r in range(p.tiles) for c in range(p.tiles)
            ]
            for c in made:
                self.tasks[c.id] = MTask(c.id, p.id, TaskKind.CHUNK, c.frame, c.row, c.col)
                p.tasks.append(c.id)
        self.follow(p.id)

    @precondition(lambda self: self.leased_tasks(TaskKind.CHUNK))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        self.finish(self.tasks[data.draw(st.sampled_from(self.leased_tasks(TaskKind.CHUNK)))])

    def finish(self, t: MTask) -> None:
        changed = self.store.tasks.complete(t.id)
        assert changed == (t.state is not D)
        if changed:
            if t.node is not None:
                self.nodes[t.node].chunks_done += 1
            t.state, t.lease, t.expires = D, None, None
            self.follow(t.pid)

    def pick_lease(self, data: st.DataObject) -> tuple[MTask, str]:
        """A task some node leased (usually one rendering now) and one of its leases (usually
        the current one)."""
        rendering = sorted(t.id for t in self.tasks.values() if t.state is R)
        if not rendering or data.draw(st.integers(0, 3)) == 0:
            rendering = sorted(t.id for t in self.tasks.values() if t.leases)
        t = self.tasks[data.draw(st.sampled_from(rendering))]
        old = [lease for lease in t.leases if lease != t.lease]
        if t.lease is None or (old and data.draw(st.integers(0, 2)) == 0):
            return t, data.draw(st.sampled_from(old))  # one that ran out: a late report
        return t, t.lease

    @precondition(lambda self: any(t.leases for t in self.tasks.values()))
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        t, lease = self.pick_lease(data)
        self.report_failure(t, lease, t.node or data.draw(st.sampled_from(NODES)))

    @precondition(lambda self: self.taken_over())
    @rule(data=st.data(), failure=st.booleans())
    def a_late_report_arrives(self, data: st.DataObject, failure: bool) -> None:
        """A node whose lease ran out reports on a task another node renders now."""
        t = self.tasks[data.draw(st.sampled_from(self.taken_over()))]
        lease = data.draw(st.sampled_from(t.leases[:-1]))
        if failure:
            self.report_failure(t, lease, data.draw(st.sampled_from(NODES)))
        else:
            self.hand_back(t, lease)

    def taken_over(self) -> list[int]:
        return sorted(t.id for t in self.tasks.values() if t.state is R and len(t.leases) > 1)

    def report_failure(self, t: MTask, lease: str, node: str) -> None:
        message = self.message()
        got = self.store.tasks.fail(t.id, lease, node, message, MAX_FAILURES)
        if t.state is not R or t.lease != lease:
            assert got is None  # a stale report changes nothing
            return
        t.failed_on.add(node)
        self.failures[(t.pid, node)] += 1
        self.requeue(t)
        online = self.online()
        gives_up = (
            len(t.failed_on) >= MAX_FAILURES
            or (bool(online) and online <= t.failed_on)
            or (bool(online) and not online - self.blocked(t.pid))
        )
        assert got == (message if gives_up else None)
        if gives_up:
            p = self.projects[t.pid]
            p.state, p.error = PE, message

    @precondition(lambda self: any(t.leases for t in self.tasks.values()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self.hand_back(*self.pick_lease(data))

    def hand_back(self, t: MTask, lease: str) -> None:
        holds = t.state is R and t.lease == lease
        assert self.store.tasks.release(t.id, lease) == holds
        if holds:
            self.requeue(t)

    @rule(node=st.sampled_from(NODES), data=st.data())
    def heartbeat(self, node: str, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.tasks) or [424242]), max_size=3))
        self.seen(node)
        lost = self.store.tasks.renew(node, ids, LEASE)
        held = [i for i in ids if i in self.tasks and self.tasks[i].state is R]
        held = [i for i in held if self.tasks[i].node == node]
        assert lost == [i for i in ids if i not in held]
        for i in held:
            self.tasks[i].expires = self.now + LEASE

    @rule(seconds=st.sampled_from([1.0, 4.0, LEASE + 1]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(seconds=st.sampled_from([LEASE + 1, 0.0, NODE_TIMEOUT + 1]))
    def reaper_runs(self, seconds: float) -> None:
        """Time passes (maybe), then leases that ran out are requeued, silent nodes go offline."""
        self.now += seconds
        expired = self.store.tasks.expire_leases()
        due = [
            t
            for t in self.tasks.values()
            if t.state is R and t.expires is not None and t.expires < self.now
        ]
        assert sorted(expired) == sorted(t.id for t in due)
        for t in due:
            self.requeue(t)
        for pid in {t.pid for t in due}:
            self.follow(pid)
        offline = self.store.nodes.mark_offline(NODE_TIMEOUT)
        silent = [
            n
            for n, m in self.nodes.items()
            if not m.offline and m.last_seen < self.now - NODE_TIMEOUT
        ]
        assert sorted(offline) == sorted(silent)
        for n in silent:
            self.nodes[n].offline = True

    @precondition(lambda self: any(t.state is R for t in self.tasks.values()))
    @rule(node=st.sampled_from(NODES))
    def leases_run_out_and_a_node_takes_over(self, node: str) -> None:
        self.reaper_runs(LEASE + 1)
        self.take(node)

    @rule(node=st.sampled_from(NODES))
    def node_leaves(self, node: str) -> None:
        self.store.nodes.left(node)
        self.nodes[node].offline = True

    @precondition(lambda self: self.projects)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        p = self.projects[data.draw(st.sampled_from(list(self.projects)))]
        if p.state is not PE:
            with pytest.raises(IllegalTransition):
                self.store.projects.retry(p.id)
            return
        new = self.store.projects.retry(p.id)
        p.state, p.error = PQ, None
        for tid in p.tasks:
            t = self.tasks[tid]
            if t.state is not D:
                self.requeue(t)
                t.failed_on.clear()
        for n in NODES:
            self.failures.pop((p.id, n), None)
        self.follow(p.id)
        assert new is p.state

    @precondition(lambda self: self.projects)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        p = self.projects.pop(data.draw(st.sampled_from(list(self.projects))))
        assert self.store.projects.delete(p.id).id == p.id
        for tid in p.tasks:
            del self.tasks[tid]
        for n in NODES:
            self.failures.pop((p.id, n), None)

    @precondition(lambda self: self.projects)
    @rule(data=st.data())
    def composite(self, data: st.DataObject) -> None:
        p = self.projects[data.draw(st.sampled_from(list(self.projects)))]
        if p.state is not PC:
            with pytest.raises(IllegalTransition):
                self.store.projects.set_result(p.id, "result.png")
            return
        self.store.projects.set_result(p.id, "result.png")
        p.state = PD

    @precondition(lambda self: self.projects)
    @rule(data=st.data())
    def compositing_fails(self, data: st.DataObject) -> None:
        p = self.projects[data.draw(st.sampled_from(list(self.projects)))]
        if p.state not in (PC, PD) and data.draw(st.integers(0, 3)):
            return  # the compositor stitches rendering projects too, but rarely fails there
        message = self.message()
        if p.state is PD:
            with pytest.raises(IllegalTransition):
                self.store.projects.set_error(p.id, message)
            return
        self.store.projects.set_error(p.id, message)
        p.state, p.error = PE, message

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def projects_match_the_model(self) -> None:
        rows = {r.id: r for r in self.store.projects.all()}
        assert set(rows) == set(self.projects)
        counts = self.store.projects.counts()
        for pid, p in self.projects.items():
            row = rows[pid]
            assert row.state is p.state, (pid, row.state, p.state)
            assert row.error == p.error
            assert (row.state is PE) == (row.error is not None)
            assert (row.result is not None) == (row.state is PD)
            chunks = self.chunks(p)
            if row.state in (PC, PD):
                assert chunks and all(t.state is D for t in chunks)
            c = counts.get(pid, ProjectCounts())
            assert (c.total, c.done, c.rendering, c.busy) == (
                len(chunks),
                sum(1 for t in chunks if t.state is D),
                sum(1 for t in chunks if t.state is R),
                self.busy(pid),
            )
            assert c.frames == len(self.store.projects.stitched_frames(pid))
            assert self.store.projects.blocklist(pid, MAX_FAILURES) == sorted(self.blocked(pid))

    @invariant()
    def tasks_match_the_model(self) -> None:
        for pid, p in self.projects.items():
            stored = self.store.tasks.of_project(pid, TaskKind.PROBE)
            stored += self.store.tasks.of_project(pid)
            assert [t.id for t in stored] == p.tasks
            for t in stored:
                m = self.tasks[t.id]
                assert t.state is m.state, (t.id, t.state, m.state)
                assert t.failed_on == sorted(m.failed_on) and t.leases == m.leases
                if t.state is R:  # never rendering without a node and a lease
                    assert t.node == m.node and t.lease == m.lease and t.lease is not None
                    assert t.lease_expires == m.expires
                else:
                    assert t.lease is None and t.lease_expires is None

    @invariant()
    def nodes_match_the_model(self) -> None:
        for row in self.store.nodes.all():
            m = self.nodes[row.name]
            assert (row.offline, row.chunks_done, row.last_seen) == (
                m.offline,
                m.chunks_done,
                m.last_seen,
            )
            rendering = [t for t in self.tasks.values() if t.state is R and t.node == row.name]
            assert (row.current is None) == (not rendering)


FarmMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=60)
test_the_store_agrees_with_a_model_of_the_farm = FarmMachine.TestCase
