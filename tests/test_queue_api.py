"""The queue's controls through the real API and store, with simulated nodes: priorities,
pause, resume, cancel, requeue, tags, disabled and resting nodes, times, preview order."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from apphelpers import ADMIN, NODE, InProcessFarm
from test_api import assert_error


def owner(answer: dict[str, Any]) -> dict[str, str]:
    return {"X-Blendfarm-Owner-Key": answer["owner_key"]}


def submit_probed(farm: InProcessFarm, node: str = "n1", **fields: str) -> dict[str, Any]:
    """A project submitted and probed (its chunks exist); returns the submission's answer."""
    return submit_all(farm, fields)[0]


def submit_all(farm: InProcessFarm, *each: dict[str, str]) -> list[dict[str, Any]]:
    """Projects submitted, then all probed; the submissions' answers."""
    answers = [dict(farm.submit({"frame": "1", **fields}).json()) for fields in each]
    probes = [farm.lease(f"prober{i}") for i in range(len(answers))]
    for probe in probes:
        assert probe is not None and probe["kind"] == "probe"
        assert farm.answer(probe).status_code == 200
    return answers


def register(farm: InProcessFarm, node: str, **info: Any) -> None:
    body = {"blender_version": "3.4.1", **info}
    resp = farm.client.post(f"/api/nodes/{node}/register", headers=NODE, json=body)
    assert resp.status_code == 200, resp.text


def project(farm: InProcessFarm, pid: str) -> dict[str, Any]:
    return dict(farm.client.get(f"/api/projects/{pid}").json())


def test_a_higher_priority_gets_free_nodes_first_and_equals_share(farm: InProcessFarm) -> None:
    low, a, b = submit_all(farm, {"tiles": "2", "priority": "10"}, {"tiles": "2"}, {"tiles": "2"})
    got = [farm.lease(n)["project"] for n in ("n1", "n2", "n3", "n4")]  # type: ignore[index]
    assert got == [a["id"], b["id"], a["id"], b["id"]]  # 50 before 10, turns among the 50s
    assert project(farm, low["id"])["priority"] == 10
    urgent = farm.client.post(
        f"/api/projects/{low['id']}/priority", json={"priority": 90}, headers=owner(low)
    )
    assert urgent.status_code == 200 and urgent.json()["priority"] == 90
    assert farm.lease("n5")["project"] == low["id"]  # type: ignore[index]


def test_priority_needs_the_owner_or_the_admin_and_a_number_from_0_to_100(
    farm: InProcessFarm,
) -> None:
    answer = farm.submit({"frame": "1"}).json()
    url = f"/api/projects/{answer['id']}/priority"
    assert_error(farm.client.post(url, json={"priority": 70}), 403)
    assert_error(farm.client.post(url, json={"priority": 101}, headers=owner(answer)), 400)
    assert_error(farm.submit({"frame": "1", "priority": "high"}), 400)
    assert farm.client.post(url, json={"priority": 0}, headers=ADMIN).json()["priority"] == 0


def test_a_paused_project_gets_no_lease_until_it_is_resumed(farm: InProcessFarm) -> None:
    farm.register()
    answer = farm.submit({"frame": "1", "paused": "true"}).json()
    pid = answer["id"]
    assert answer["state"] == "paused" and "paused" in project(farm, pid)["waiting"]
    assert farm.lease() is None
    assert_error(farm.client.post(f"/api/projects/{pid}/resume"), 403)
    resumed = farm.client.post(f"/api/projects/{pid}/resume", headers=owner(answer))
    assert resumed.json()["state"] == "queued"
    assert farm.lease()["project"] == pid  # type: ignore[index]


def test_pausing_lets_rendering_chunks_finish_and_count(farm: InProcessFarm) -> None:
    answer = submit_probed(farm, tiles="2")
    pid = answer["id"]
    rendering = farm.lease("n1")
    assert rendering is not None
    paused = farm.client.post(f"/api/projects/{pid}/pause", headers=owner(answer))
    assert paused.json()["state"] == "paused"
    assert farm.lease("n2") is None
    assert farm.answer(rendering).json()["accepted"] is True
    view = project(farm, pid)
    assert view["state"] == "paused" and view["chunks_done"] == 1
    assert_error(farm.client.post(f"/api/projects/{pid}/pause", headers=ADMIN), 409)
    farm.client.post(f"/api/projects/{pid}/resume", headers=ADMIN)
    assert project(farm, pid)["state"] == "rendering"  # it had a chunk done
    assert farm.run_all("n2") == 3 and project(farm, pid)["state"] == "done"


def test_cancel_reaches_the_node_at_its_next_heartbeat_and_keeps_what_is_done(
    farm: InProcessFarm,
) -> None:
    farm.register("n1")
    answer = submit_probed(farm, tiles="2")
    pid = answer["id"]
    done = farm.lease("n1")
    farm.answer(done)  # type: ignore[arg-type]
    rendering = farm.lease("n1")
    assert rendering is not None
    assert_error(farm.client.post(f"/api/projects/{pid}/cancel"), 403)
    cancelled = farm.client.post(f"/api/projects/{pid}/cancel", headers=owner(answer))
    assert cancelled.json()["state"] == "cancelled"
    beat = farm.client.post(
        "/api/nodes/n1/heartbeat", headers=NODE, json={"tasks": [rendering["id"]]}
    )
    assert beat.json()["cancel"] == [rendering["id"]]
    assert farm.lease("n1") is None
    view = project(farm, pid)
    assert view["chunks_done"] == 1 and view["chunks_rendering"] == 0
    raw = farm.client.get(view["raw_url"])  # what is done can be downloaded
    with zipfile.ZipFile(io.BytesIO(raw.content)) as zf:
        assert zf.namelist() == [f"{pid}-{done['frame']}-{done['row']}-{done['col']}.png"]  # type: ignore[index]
    assert_error(farm.client.post(f"/api/projects/{pid}/cancel", headers=ADMIN), 409)
    assert_error(farm.client.post(f"/api/projects/{pid}/resume", headers=ADMIN), 409)
    retried = farm.client.post(f"/api/projects/{pid}/retry", headers=owner(answer))
    assert retried.json()["state"] == "rendering" and retried.json()["chunks_done"] == 1
    assert farm.run_all("n1") == 3 and project(farm, pid)["state"] == "done"


def test_requeue_renders_frames_again_and_remakes_the_result(farm: InProcessFarm) -> None:
    answer = farm.submit({"frames": "1-3", "tiles": "2"}).json()
    pid = answer["id"]
    assert farm.run_all() == 1 + 12
    first = project(farm, pid)
    assert first["state"] == "done"
    url = f"/api/projects/{pid}/requeue"
    assert_error(farm.client.post(url, json={"frames": "2-2"}), 403)
    assert_error(farm.client.post(url, json={}, headers=ADMIN), 400)
    assert_error(farm.client.post(url, json={"frames": "9-12"}, headers=ADMIN), 400)
    assert_error(farm.client.post(url, json={"chunks": ["2:5:0"]}, headers=ADMIN), 400)
    again = farm.client.post(url, json={"frames": "2-2"}, headers=owner(answer))
    assert again.status_code == 200 and again.json()["chunks"] == 4
    view = again.json()["project"]
    assert view["state"] == "rendering" and view["chunks_done"] == 8 and view["result_url"] is None
    leased = [farm.lease() for _ in range(4)]
    assert {t["frame"] for t in leased} == {2} and farm.lease() is None  # type: ignore[index]
    for t in leased:
        farm.answer(t)  # type: ignore[arg-type]
    farm.background.composite_all()
    assert project(farm, pid)["state"] == "done"
    one = farm.client.post(url, json={"chunks": ["3:1:0"]}, headers=owner(answer))
    assert one.json()["chunks"] == 1
    task = farm.lease()
    assert (task["frame"], task["row"], task["col"]) == (3, 1, 0)  # type: ignore[index]


def test_a_project_needing_a_tag_waits_for_a_node_that_has_it(farm: InProcessFarm) -> None:
    register(farm, "plain")
    answer = farm.submit({"frame": "1", "require_tags": "GPU"}).json()
    assert answer["require_tags"] == ["gpu"]
    assert project(farm, answer["id"])["waiting"] == "waiting for a node tagged gpu"
    assert farm.lease("plain") is None
    register(farm, "big", tags=["gpu", "big-ram"])
    assert project(farm, answer["id"])["waiting"] is None
    assert farm.lease("big")["project"] == answer["id"]  # type: ignore[index]
    assert_error(farm.submit({"frame": "1", "require_tags": "no spaces"}), 400)


def test_a_disabled_node_finishes_its_chunk_then_takes_nothing(farm: InProcessFarm) -> None:
    farm.register("n1")
    answer = submit_probed(farm, tiles="2")
    task = farm.lease("n1")
    assert_error(farm.client.post("/api/nodes/n1/disable", headers=owner(answer)), 403)
    node = farm.client.post("/api/nodes/n1/disable", headers=ADMIN).json()
    assert node["disabled"] is True and node["state"] == "rendering"
    assert farm.answer(task).json()["accepted"] is True  # type: ignore[arg-type]
    assert farm.lease("n1") is None
    assert farm.client.get("/api/nodes").json()[0]["state"] == "disabled"
    assert_error(farm.client.post("/api/nodes/nobody/disable", headers=ADMIN), 404)
    assert farm.client.post("/api/nodes/n1/enable", headers=ADMIN).json()["state"] == "idle"
    assert farm.lease("n1") is not None


def test_a_node_inside_its_sleep_hours_rests(farm: InProcessFarm) -> None:
    register(farm, "sleepy", schedule="daily 00:00-24:00 off")
    pid = farm.submit({"frame": "1"}).json()["id"]
    assert farm.lease("sleepy") is None
    assert farm.client.get("/api/nodes").json()[0]["state"] == "resting"
    waiting = project(farm, pid)["waiting"]
    assert waiting == "waiting: every online node is disabled or resting"
    register(farm, "sleepy", schedule="")
    assert farm.lease("sleepy") is not None


def test_a_cancelled_animation_keeps_its_stitched_frames_for_download(
    farm: InProcessFarm,
) -> None:
    answer = farm.submit({"frames": "1-3", "order": "sequential"}).json()
    pid = answer["id"]
    farm.answer(farm.lease())  # type: ignore[arg-type]
    farm.answer(farm.lease())  # type: ignore[arg-type]
    farm.background.composite_all()
    farm.client.post(f"/api/projects/{pid}/cancel", headers=owner(answer))
    farm.background.composite_all()  # a cancelled project is not composited further
    view = project(farm, pid)
    assert view["state"] == "cancelled" and view["frames_done"] == 1
    raw = farm.client.get(view["raw_url"])
    assert raw.status_code == 200 and "partial" in raw.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(raw.content)) as zf:
        assert sorted(zf.namelist()) == [f"{pid}-1-0-0.png", "frames/1.png"]


def test_chunk_times_give_frame_times_an_eta_range_and_throughput(farm: InProcessFarm) -> None:
    clock = [1000.0]
    farm.farm.store.db.clock = lambda: clock[0]
    answer = farm.submit({"frames": "1-3", "tiles": "2", "order": "sequential"}).json()
    pid = answer["id"]
    farm.answer(farm.lease("n1"))  # type: ignore[arg-type]
    for seconds in (10.0, 20.0, 30.0, 40.0):  # frame 1's four chunks
        task = farm.lease("n1")
        clock[0] += seconds
        farm.answer(task)  # type: ignore[arg-type]
    busy = [farm.lease("n1"), farm.lease("n2")]
    assert all(t is not None for t in busy)
    view = project(farm, pid)
    assert view["frame_times"] == [{"frame": 1, "seconds": 100.0}]
    assert view["nodes_working"] == 2
    # 8 chunks left, 2 nodes: 4 rounds of 17.5 s (quick) to 37 s (slow)
    assert (view["eta_low"], view["eta_high"]) == (70.0, 148.0)
    assert farm.client.get("/api/status").json()["throughput"] >= 0


def test_animations_render_first_last_and_middle_frames_first(farm: InProcessFarm) -> None:
    farm.submit({"frames": "1-5"})
    farm.answer(farm.lease())  # type: ignore[arg-type]
    order = [farm.lease()["frame"] for _ in range(5)]  # type: ignore[index]
    assert order == [1, 5, 3, 2, 4]
    farm.submit({"frames": "1-5", "order": "sequential"})
    farm.answer(farm.lease())  # type: ignore[arg-type]
    assert [farm.lease()["frame"] for _ in range(5)] == [1, 2, 3, 4, 5]  # type: ignore[index]


def test_the_controls_are_in_the_openapi_document(farm: InProcessFarm) -> None:
    paths = farm.client.get("/api/openapi.json").json()["paths"]
    for action in ("priority", "pause", "resume", "cancel", "requeue"):
        assert "post" in paths[f"/api/projects/{{pid}}/{action}"]
    assert "post" in paths["/api/nodes/{name}/disable"]


def test_a_requeue_while_the_result_is_written_sends_the_project_back_to_work(
    farm: InProcessFarm,
) -> None:
    answer = farm.submit({"frames": "1-2"}).json()
    pid = answer["id"]
    farm.answer(farm.lease())  # type: ignore[arg-type]
    farm.answer(farm.lease())  # type: ignore[arg-type]
    farm.answer(farm.lease())  # type: ignore[arg-type]
    assert project(farm, pid)["state"] == "compositing"
    farm.background.composite_all()  # stitched and finished once
    store = farm.farm.store
    farm.client.post(f"/api/projects/{pid}/requeue", json={"frames": "2"}, headers=ADMIN)
    row, tasks = store.projects.get(pid), store.tasks.of_project(pid)
    farm.farm.compositor.finish(row, [1, 2], tasks)  # the finish that was under way ends
    assert project(farm, pid)["state"] == "rendering"  # not done, not in error
    farm.run_all()
    assert project(farm, pid)["state"] == "done"
