"""Interleavings that once broke the farm, replayed step by step (found by bench/load.py)."""

from __future__ import annotations

from pathlib import Path

from apphelpers import NODE, PROBE, InProcessFarm
from blendfarm.protocol import Task, convert, to_builtins
from test_node import FakeRenderer, make_node


def test_a_probe_landing_during_a_compositing_pass_does_not_error_the_project(
    farm: InProcessFarm,
) -> None:
    pid = farm.submit({"frames": "1-2"}).json()["id"]
    probe = farm.lease()
    assert probe is not None
    stale_rows = farm.farm.store.projects.all()  # the pass lists projects (width still None)...
    farm.answer(probe, PROBE)  # ...a probe lands...
    chunk = farm.lease()
    assert chunk is not None
    farm.answer(chunk)  # ...and a frame is complete before the pass reaches the project
    for row in stale_rows:
        farm.farm.compositor.composite(row)
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["state"] == "rendering" and p["frames_done"] == 1


def test_a_cancel_for_a_finished_task_does_not_stop_the_next_one(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    farm.submit({"frames": "1-3"})
    renderer = FakeRenderer()
    aborted: list[bool] = []
    renderer.abort = lambda polite=False: aborted.append(True)  # type: ignore[method-assign]
    node = make_node(farm, tmp_path, renderer)
    node.register()
    first = convert(farm.lease(node.name), Task)
    # The heartbeat is sent while the node works on the first task...
    node.in_flight.begin(first)
    farm.answer(to_builtins(first))  # ...its result lands first, so the answer will cancel it...
    second = convert(farm.lease(node.name), Task)
    http = node.client.http
    real_request = http.request

    def request(method: str, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
        resp = real_request(method, url, **kwargs)  # type: ignore[arg-type]
        if url.endswith("/heartbeat"):
            node.in_flight.begin(second)  # ...and the node moved on while the request was away
        return resp

    http.request = request  # type: ignore[method-assign]
    node.heartbeats.beat()
    assert aborted == [] and not node.in_flight.lost.is_set()


def test_a_cancel_arriving_while_the_result_uploads_keeps_the_warm_blender(
    farm: InProcessFarm, tmp_path: Path
) -> None:
    farm.submit({"frames": "1-2"})
    renderer = FakeRenderer()
    aborted: list[bool] = []
    renderer.abort = lambda polite=False: aborted.append(True)  # type: ignore[method-assign]
    node = make_node(farm, tmp_path, renderer)
    node.register()
    farm.answer(farm.lease(node.name))  # type: ignore[arg-type]  (the probe)
    task = convert(farm.lease(node.name), Task)
    assert task.kind == "chunk"
    http = node.client.http
    real_request = http.request

    def request(method: str, url: str, **kwargs: object):  # type: ignore[no-untyped-def]
        resp = real_request(method, url, **kwargs)  # type: ignore[arg-type]
        if method == "PUT":
            node.heartbeats.beat()  # the beat lands after the result: the server cancels it
        return resp

    http.request = request  # type: ignore[method-assign]
    node.run_task(task)
    assert aborted == []  # Blender had finished: nothing to stop, the session stays warm
    assert node.chunks_done == 1


def expire_every_lease(farm: InProcessFarm) -> None:
    store = farm.farm.store
    real_clock = store.db.clock
    store.db.clock = lambda: real_clock() + 3600
    try:
        assert store.tasks.expire_leases()
    finally:
        store.db.clock = real_clock


def test_a_late_failure_does_not_take_the_task_from_the_node_that_has_it_now(
    farm: InProcessFarm,
) -> None:
    for n in ("slow", "fast"):
        farm.register(n)
    pid = farm.submit({"frame": "1"}).json()["id"]
    farm.answer(farm.lease("fast"))
    stale = farm.lease("slow")
    assert stale is not None
    expire_every_lease(farm)  # slow's lease runs out...
    current = farm.lease("fast")  # ...and the chunk goes to fast
    assert current is not None and current["id"] == stale["id"]
    answer = farm.client.post(  # ...when slow's failure report arrives
        f"/api/tasks/{stale['id']}/fail",
        params={"lease": stale["lease"]},
        headers=NODE,
        json={"node": "slow", "message": "Error: out of memory"},
    )
    assert answer.json() == {"recorded": True, "project_error": False}
    task = farm.farm.store.tasks.get(current["id"])
    assert (task.state, task.node, task.lease) == ("rendering", "fast", current["lease"])
    assert farm.answer(current).json()["accepted"] is True
    assert farm.client.get(f"/api/projects/{pid}").json()["chunks_done"] == 1


def test_a_late_hand_back_does_not_take_the_task_from_the_node_that_has_it_now(
    farm: InProcessFarm,
) -> None:
    farm.submit({"frame": "1"})
    farm.answer(farm.lease("fast"))
    stale = farm.lease("slow")
    assert stale is not None
    expire_every_lease(farm)
    current = farm.lease("fast")
    assert current is not None and current["id"] == stale["id"]
    farm.client.post(
        f"/api/tasks/{stale['id']}/release", params={"lease": stale["lease"]}, headers=NODE
    )
    task = farm.farm.store.tasks.get(current["id"])
    assert (task.state, task.node) == ("rendering", "fast")
    assert farm.lease("slow") is None  # nothing else to hand out: the chunk stays with fast
