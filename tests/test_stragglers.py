"""Duplicate stragglers against the real in-process API, with the store's clock in hand: an
idle node gets a copy of a chunk that runs clearly longer than its project's typical chunk,
the first result wins and the other node is told to stop; a task holding two leases renders
on when one of them ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apphelpers import NODE, InProcessFarm


def heartbeat(farm: InProcessFarm, node: str, *tasks: int) -> list[int]:
    resp = farm.client.post(f"/api/nodes/{node}/heartbeat", headers=NODE, json={"tasks": tasks})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["cancel"])


def stops(farm: InProcessFarm, node: str) -> list[int]:
    resp = farm.client.get(f"/api/nodes/{node}/stops", headers=NODE, params={"wait": "0"})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["cancel"])


def straggling(farm: InProcessFarm) -> tuple[dict[str, Any], list[float]]:
    """A 2x2 still: "slow" holds one chunk from t=1000 while "fast" renders the other three
    in 1.5 s each (until t=1004.5); returns the slow chunk and the clock."""
    clock = [1000.0]
    farm.farm.store.db.clock = lambda: clock[0]
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    while (task := farm.lease("fast")) is not None and task["kind"] == "probe":
        assert farm.answer(task).status_code == 200
    assert task is not None
    slow = farm.lease("slow")
    assert slow is not None and slow["project"] == pid
    for _ in range(3):
        assert task is not None
        clock[0] += 1.5
        assert farm.answer(task).json()["accepted"]
        task = farm.lease("fast")
    assert task is None  # 4.5 s: the slow chunk runs 3 x the median, but under the floor
    return slow, clock


def test_an_idle_node_copies_a_straggler_the_first_result_wins_and_the_other_stops(
    farm: InProcessFarm,
) -> None:
    slow, clock = straggling(farm)
    clock[0] = 1000 + 5.5  # past 1.5 x the median (1.5 s) and past the floor (5 s)
    assert farm.lease("slow") is None  # never a copy of its own chunk
    copy = farm.lease("fast")
    assert copy is not None and copy["id"] == slow["id"] and copy["lease"] != slow["lease"]
    assert farm.lease("idle") is None  # one copy per task
    assert heartbeat(farm, "slow", slow["id"]) == [] and heartbeat(farm, "fast", copy["id"]) == []
    nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
    assert nodes["fast"]["current"]["row"] == slow["row"]  # both show what they render
    assert nodes["slow"]["current"]["row"] == slow["row"]
    clock[0] += 2.0
    assert farm.answer(copy).json()["accepted"]  # the copy is first
    assert stops(farm, "slow") == [slow["id"]]  # told at once...
    assert stops(farm, "slow") == []  # ...once
    assert stops(farm, "fast") == []
    assert heartbeat(farm, "slow", slow["id"]) == [slow["id"]]  # and the heartbeat agrees
    late = farm.answer(slow).json()
    assert late == {"accepted": False, "reason": "the chunk is already done", "next": None}
    farm.background.composite_all()
    project = farm.client.get(f"/api/projects/{slow['project']}").json()
    assert project["state"] == "done" and project["chunks_done"] == 4
    nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
    assert nodes["fast"]["chunks_done"] == 4 and nodes["slow"]["chunks_done"] == 0


def test_no_copy_before_a_chunk_straggles(farm: InProcessFarm) -> None:
    _slow, clock = straggling(farm)
    clock[0] = 1000 + 4.9  # over 3 x the median, but under the floor of 5 s
    assert farm.lease("idle") is None


def test_the_original_wins_and_the_copy_is_told_to_stop(farm: InProcessFarm) -> None:
    slow, clock = straggling(farm)
    clock[0] = 1010.0
    copy = farm.lease("fast")
    assert copy is not None and copy["id"] == slow["id"]
    assert farm.answer(slow).json()["accepted"]
    assert stops(farm, "fast") == [copy["id"]] and stops(farm, "slow") == []
    nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
    assert nodes["slow"]["chunks_done"] == 1


def test_a_task_with_two_leases_renders_on_when_one_expires_or_fails(farm: InProcessFarm) -> None:
    slow, clock = straggling(farm)
    clock[0] = 1010.0
    copy = farm.lease("fast")
    assert copy is not None
    store = farm.farm.store.tasks
    clock[0] += farm.settings.node_timeout - 5  # the slow node stopped beating; fast beats
    assert heartbeat(farm, "fast", copy["id"]) == []
    clock[0] += 10
    assert store.expire_leases() == []  # not requeued: the copy still renders it
    task = store.get(slow["id"])
    assert task.state.value == "rendering" and task.node == "fast" and task.copy_node is None
    assert heartbeat(farm, "slow", slow["id"]) == [slow["id"]]
    assert farm.lease("idle") is None  # at most one copy per render
    assert farm.answer(copy).json()["accepted"]


def test_a_failed_copy_leaves_the_task_to_its_first_node(farm: InProcessFarm) -> None:
    slow, clock = straggling(farm)
    clock[0] = 1010.0
    copy = farm.lease("fast")
    assert copy is not None
    failed = farm.client.post(
        f"/api/tasks/{copy['id']}/fail",
        headers=NODE,
        params={"lease": copy["lease"]},
        json={"node": "fast", "message": "out of memory"},
    )
    assert failed.status_code == 200 and not failed.json()["project_error"]
    task = farm.farm.store.tasks.get(slow["id"])
    assert task.state.value == "rendering" and task.node == "slow" and task.copy_node is None
    assert task.failed_on == ["fast"]
    assert heartbeat(farm, "slow", slow["id"]) == []
    assert farm.answer(slow).json()["accepted"]


def test_a_paused_projects_chunks_are_never_copied(farm: InProcessFarm) -> None:
    slow, clock = straggling(farm)
    clock[0] = 1010.0
    paused = farm.client.post(
        f"/api/projects/{slow['project']}/pause", headers={"X-Blendfarm-Password": "pw-456"}
    )
    assert paused.status_code == 200, paused.text
    assert farm.lease("fast") is None


def test_no_copy_is_made_when_duplicates_are_switched_off(tmp_path: Path) -> None:
    farm = InProcessFarm(tmp_path, duplicates=False)
    try:
        slow, clock = straggling(farm)
        clock[0] = 1000 + 60.0  # far past every threshold
        assert farm.lease("fast") is None
        assert heartbeat(farm, "slow", slow["id"]) == []
    finally:
        farm.client.close()
        farm.farm.close()
