from __future__ import annotations

import time
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from starlette import formparsers

from apphelpers import ADMIN, NODE, PROBE, InProcessFarm, fake_project_zip, png_bytes
from blendfarm.errors import Forbidden, TooManyRequests
from blendfarm.server import routes_nodes
from blendfarm.server.app import ROUTES


def assert_error(resp, status: int) -> str:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "status"}
    assert body["error"]["status"] == status and "\n" not in body["error"]["message"]
    return str(body["error"]["message"])


def test_a_project_goes_from_upload_to_result(farm: InProcessFarm) -> None:
    farm.register()
    resp = farm.submit({"frames": "1-2", "tiles": "2", "title": "Demo"})
    assert resp.status_code == 201, resp.text
    pid = resp.json()["id"]
    assert resp.json()["state"] == "queued"
    assert farm.run_all() == 1 + 8  # the probe, then 2 frames x 4 chunks
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["state"] == "done" and (p["chunks_done"], p["chunks_total"]) == (8, 8)
    assert (p["width"], p["height"], p["fps"]) == (31, 23, 24.0)
    result = farm.client.get(p["result_url"])
    assert result.headers["content-type"] == "video/mp4" and len(result.content) > 100
    raw = farm.client.get(p["raw_url"])
    with zipfile.ZipFile(BytesIO(raw.content)) as zf:
        assert len(zf.namelist()) == 8 and f"{pid}-2-1-1.png" in zf.namelist()
    assert farm.client.get(p["thumbnail_url"]).headers["content-type"] == "image/png"
    nodes = farm.client.get("/api/nodes").json()
    assert nodes[0]["name"] == "n1" and nodes[0]["chunks_done"] == 8
    gone = farm.client.delete(f"/api/projects/{pid}", headers=ADMIN)
    assert gone.json()["freed"] > 0
    assert not (farm.settings.data / "projects" / pid).exists()
    assert_error(farm.client.get(f"/api/projects/{pid}"), 404)


def test_a_lone_blend_upload_is_a_project(farm: InProcessFarm) -> None:
    resp = farm.submit({"frame": "1"}, content=b"BLENDER-v304" + b"\0" * 64, filename="shot.blend")
    assert resp.status_code == 201, resp.text
    assert resp.json()["blend"] == "shot.blend" and resp.json()["title"] == "shot"


def test_projects_take_turns(farm: InProcessFarm) -> None:
    a = farm.submit({"frame": "1", "tiles": "3"}).json()["id"]
    b = farm.submit({"frame": "1", "tiles": "3"}).json()["id"]
    probes = [farm.lease("n1"), farm.lease("n2")]
    assert [t["project"] for t in probes] == [a, b]  # type: ignore[index]
    for t in probes:
        farm.answer(t)  # type: ignore[arg-type]
    got = [farm.lease(n)["project"] for n in ("n1", "n2", "n1", "n2")]  # type: ignore[index]
    assert got == [a, b, a, b]


def test_results_are_idempotent_and_survive_an_expired_lease(farm: InProcessFarm) -> None:
    farm.submit({"frame": "1"})
    farm.answer(farm.lease())
    task = farm.lease()
    assert task is not None
    store = farm.farm.store
    store.db.clock = lambda: time.time() + 3600  # an hour later...
    assert store.tasks.expire_leases() == [task["id"]]  # ...the lease has run out
    # The lease ran out, but the chunk is unfinished and the image good: accepted.
    assert farm.answer(task).json() == {"accepted": True, "reason": None, "next": None}
    assert farm.answer(task).json()["accepted"] is False  # already done: ignored


def test_bad_results_from_nodes_are_refused(farm: InProcessFarm) -> None:
    farm.submit({"frame": "1", "tiles": "2"})
    farm.answer(farm.lease())
    task = farm.lease()
    assert task is not None
    url = f"/api/tasks/{task['id']}/result"
    assert "not a PNG" in assert_error(
        farm.client.put(url, params={"lease": task["lease"]}, headers=NODE, content=b"GIF89a.."),
        400,
    )
    assert "expected" in assert_error(
        farm.client.put(
            url, params={"lease": task["lease"]}, headers=NODE, content=png_bytes(3, 3)
        ),
        400,
    )
    rect = task["rect"]
    whole = png_bytes(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"])
    cut = whole[: len(whole) - 20]  # a file cut off on the node's full disk
    assert "damaged" in assert_error(
        farm.client.put(url, params={"lease": task["lease"]}, headers=NODE, content=cut), 400
    )
    assert_error(
        farm.client.put(url, params={"lease": "nope"}, headers=NODE, content=png_bytes(3, 3)), 409
    )
    assert_error(
        farm.client.put(
            "/api/tasks/99999/result", params={"lease": "x"}, headers=NODE, content=b""
        ),
        404,
    )
    assert_error(
        farm.client.put("/api/tasks/abc/result", params={"lease": "x"}, headers=NODE, content=b""),
        400,
    )
    assert not list((farm.settings.data / "tmp").iterdir())


def test_node_endpoints_need_the_token(farm: InProcessFarm) -> None:
    assert_error(farm.client.post("/api/nodes/n1/lease"), 401)
    assert_error(
        farm.client.post("/api/nodes/n1/lease", headers={"Authorization": "Bearer x"}), 401
    )
    archive = fake_project_zip()
    pid = farm.submit(content=archive).json()["id"]
    assert_error(farm.client.get(f"/api/projects/{pid}/archive"), 401)
    ok = farm.client.get(f"/api/projects/{pid}/archive", headers=NODE)
    assert ok.status_code == 200 and ok.content == archive


def test_purge_needs_the_password_and_limits_guesses(farm: InProcessFarm) -> None:
    farm.submit()
    old_id = farm.client.get("/api/health").json()["server_id"]
    assert_error(farm.client.post("/api/purge"), 403)
    assert_error(farm.client.post("/api/purge", headers={"X-Blendfarm-Password": "no"}), 403)
    assert farm.client.post("/api/purge", headers=ADMIN).json() == {"purged": True}
    assert farm.client.get("/api/projects").json() == []
    assert farm.client.get("/api/health").json()["server_id"] != old_id
    for _ in range(5):
        farm.client.post("/api/purge", headers={"X-Blendfarm-Password": "no"})
    assert_error(farm.client.post("/api/purge", headers=ADMIN), 429)


def test_the_server_log_is_shown_only_with_the_admin_password(farm: InProcessFarm) -> None:
    farm.submit({"title": "Logged"})
    assert_error(farm.client.get("/api/logs"), 403)
    assert_error(farm.client.get("/api/logs", headers={"X-Blendfarm-Password": "no"}), 403)
    resp = farm.client.get("/api/logs", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert any("submitted" in line for line in resp.json()["lines"]), resp.json()


@pytest.mark.parametrize(
    ("data", "content", "status", "message"),
    [
        ({"frames": "4-1"}, None, 400, "before it starts"),
        ({"tiles": "0"}, None, 400, "tiles"),
        ({"bogus": "1"}, None, 400, "unknown field"),
        ({"blend": "missing.blend"}, None, 400, "not in the archive"),
        ({}, b"this is not a zip", 400, "neither a zip"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    farm: InProcessFarm, data: dict[str, str], content: bytes | None, status: int, message: str
) -> None:
    assert message in assert_error(farm.submit(data, content), status)
    assert farm.client.get("/api/projects").json() == []
    assert not list((farm.settings.data / "tmp").iterdir())
    assert not list((farm.settings.data / "projects").iterdir())


def test_an_upload_that_would_fill_the_disk_is_refused(tmp_path: Path) -> None:
    f = InProcessFarm(tmp_path, disk_reserve=10**18)
    assert "disk space" in assert_error(f.submit(), 507)
    assert f.client.get("/api/projects").json() == []


def test_a_probe_that_cannot_be_tiled_puts_the_project_in_error(farm: InProcessFarm) -> None:
    pid = farm.submit({"frame": "1", "tiles": "30"}).json()["id"]
    farm.answer(farm.lease())
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["state"] == "error" and "cannot be cut" in p["error"]
    assert farm.lease() is None
    farm.client.post(
        f"/api/projects/{pid}/retry", headers=ADMIN
    )  # retried, it is probed again, not stuck
    again = farm.lease()
    assert again is not None and again["kind"] == "probe" and again["project"] == pid


def test_a_result_missing_from_disk_is_a_clear_404(farm: InProcessFarm) -> None:
    pid = farm.submit({"frame": "1"}).json()["id"]
    farm.run_all()
    (farm.settings.data / "projects" / pid / "result.png").unlink()
    (farm.settings.data / "projects" / pid / "raw.zip").unlink()
    assert "missing" in assert_error(farm.client.get(f"/api/projects/{pid}/result"), 404)
    assert "missing" in assert_error(farm.client.get(f"/api/projects/{pid}/raw"), 404)


def test_three_failures_error_the_project_and_retry_recovers(farm: InProcessFarm) -> None:
    for n in ("a", "b", "c"):
        farm.register(n)
    pid = farm.submit({"frame": "1"}).json()["id"]
    farm.answer(farm.lease("a"))
    for n in ("a", "b", "c"):
        task = farm.lease(n)
        assert task is not None
        farm.client.post(
            f"/api/tasks/{task['id']}/fail",
            params={"lease": task["lease"]},
            headers=NODE,
            json={"node": n, "message": "Error: boom", "log": ["line 1", "Error: boom"]},
        )
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["state"] == "error" and "boom" in p["error"]
    assert farm.lease("a") is None
    assert farm.client.post(f"/api/projects/{pid}/retry", headers=ADMIN).json()["state"] in (
        "queued",
        "rendering",
    )
    assert farm.run_all("a") == 1
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"


def test_unfinished_results_are_a_conflict(farm: InProcessFarm) -> None:
    pid = farm.submit().json()["id"]
    assert "not finished" in assert_error(farm.client.get(f"/api/projects/{pid}/result"), 409)
    assert_error(farm.client.get(f"/api/projects/{pid}/thumbnail"), 404)
    assert_error(farm.client.post(f"/api/projects/{pid}/retry", headers=ADMIN), 409)


def test_every_error_has_the_one_json_shape(farm: InProcessFarm) -> None:
    assert_error(farm.client.get("/api/nope"), 404)
    assert_error(farm.client.delete("/api/status"), 405)
    assert_error(farm.client.post("/api/nodes/n1/heartbeat", headers=NODE, content=b"{bad"), 400)
    assert_error(farm.client.post("/api/nodes/bad%20name/lease", headers=NODE), 400)
    assert_error(farm.client.post("/api/projects", content=b"x"), 400)


def test_openapi_describes_every_route(farm: InProcessFarm) -> None:
    doc = farm.client.get("/api/openapi.json").json()
    for route in ROUTES:
        for method in route.methods - {"HEAD"}:  # type: ignore[operator]
            assert method.lower() in doc["paths"][route.path], (route.path, method)
    submit = doc["paths"]["/api/projects"]["post"]
    assert "multipart/form-data" in submit["requestBody"]["content"]


def test_cors_allows_only_the_dashboard(farm: InProcessFarm, tmp_path: Path) -> None:
    def allowed(client, origin: str) -> str | None:  # type: ignore[no-untyped-def]
        return client.get("/api/status", headers={"Origin": origin}).headers.get(
            "access-control-allow-origin"
        )

    # Bound to one address: the dashboard on that address and its port only.
    assert allowed(farm.client, "http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert allowed(farm.client, "http://evil.example") is None
    assert allowed(farm.client, "http://127.0.0.1:9999") is None
    # Bound to every address: the dashboard's port under this machine's names and addresses,
    # and under the names the admin adds; never under a name that is not the server's.
    from starlette.testclient import TestClient

    from blendfarm.server.app import create_app
    from blendfarm.server.origins import local_addresses
    from blendfarm.settings import Settings

    settings = Settings(
        data=tmp_path / "lan", host="0.0.0.0", ui_port=8080, token="t", allowed_hosts="farm.lan"
    )
    client = TestClient(create_app(settings, background=False), base_url="http://127.0.0.1:2254")
    address = sorted(a for a in local_addresses() if "." in a)[0]
    assert allowed(client, f"http://{address}:8080") == f"http://{address}:8080"
    assert allowed(client, "http://farm.lan:8080") == "http://farm.lan:8080"
    assert allowed(client, "http://[::1]:8080") == "http://[::1]:8080"
    assert allowed(client, "http://192.0.2.77:8080") is None  # not one of ours
    assert allowed(client, "http://evil.example:8080") is None
    assert allowed(client, "http://evil.example:8080.attacker.net") is None


def test_a_foreign_host_or_a_foreign_origin_changing_the_farm_is_refused(
    farm: InProcessFarm,
) -> None:
    # DNS rebinding: the attacker's name points at the server, the Host header stays theirs.
    rebound = farm.client.get("/api/status", headers={"Host": "evil.example:2254"})
    assert assert_error(rebound, 400)
    # A plain cross-site form POST (or fetch) from another site may not submit or delete.
    other = {"Origin": "http://evil.example"}
    resp = farm.client.post("/api/projects", headers=other, files={"file": ("p.zip", b"PK")})
    assert "another site" in assert_error(resp, 403)
    pid = farm.submit({"frame": "1"}).json()["id"]
    assert_error(farm.client.delete(f"/api/projects/{pid}", headers=other), 403)
    assert farm.client.get(f"/api/projects/{pid}").status_code == 200
    # The dashboard's own origin, and clients that send no Origin (CLI, nodes), may.
    mine = {"Origin": "http://127.0.0.1:8080", **ADMIN}
    assert farm.client.delete(f"/api/projects/{pid}", headers=mine).status_code == 200
    # Reading stays open to any page (progress is public on the LAN).
    assert farm.client.get("/api/status", headers=other).status_code == 200


def test_leases_run_out_and_silent_nodes_go_offline(tmp_path: Path) -> None:
    f = InProcessFarm(tmp_path, node_timeout=0.2)
    f.register("n1")
    f.submit({"frame": "1"})
    task = f.lease("n1")
    assert task is not None
    time.sleep(0.4)
    f.background.reap()
    assert f.client.get("/api/nodes").json()[0]["state"] == "offline"
    again = f.lease("n2")
    assert again is not None and again["id"] == task["id"]


def test_heartbeat_renews_leases_and_keeps_logs(farm: InProcessFarm) -> None:
    farm.register()
    farm.submit()
    task = farm.lease()
    assert task is not None
    beat = farm.client.post(
        "/api/nodes/n1/heartbeat",
        headers=NODE,
        json={"tasks": [task["id"], 424242], "log": ["Fra:1 Sample 1/4"]},
    )
    assert beat.json()["cancel"] == [424242]
    node = farm.client.get("/api/nodes").json()[0]
    assert node["log_tail"] == ["Fra:1 Sample 1/4"] and node["current"]["kind"] == "probe"
    assert farm.client.get("/api/nodes/n1/log").json()["lines"] == ["Fra:1 Sample 1/4"]


def test_a_damaged_chunk_file_is_rendered_again_and_the_project_still_finishes(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_nodes, "SMALL_IMAGE_BYTES", 0)  # files, as bigger chunks are
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    while (task := farm.lease()) is not None:
        farm.answer(task)
    chunk = farm.settings.data / "projects" / pid / "chunks" / "1-0-0.png"
    chunk.write_bytes(b"garbage")  # the disk lost what it held (a power cut, a bad sector)
    farm.background.composite_all()
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["state"] == "rendering" and p["chunks_done"] == 3 and p["error"] is None
    assert not (farm.settings.data / "projects" / pid / "result.png").exists()
    assert not list((farm.settings.data / "projects" / pid).glob("**/.*tmp*"))
    again = farm.lease()  # only that chunk is rendered again
    assert again is not None and (again["frame"], again["row"], again["col"]) == (1, 0, 0)
    farm.answer(again)
    assert farm.lease() is None
    farm.background.composite_all()
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"


def test_retry_renders_again_the_chunks_whose_files_are_gone(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_nodes, "SMALL_IMAGE_BYTES", 0)  # files, as bigger chunks are
    farm.register("n1")
    pid = farm.submit({"frames": "1-2", "tiles": "2"}).json()["id"]
    farm.answer(farm.lease())  # the probe
    for _ in range(4):  # frame 1 renders...
        farm.answer(farm.lease())
    task = farm.lease()  # ...and a chunk of frame 2 fails on the only node: the project errs
    assert task is not None
    farm.client.post(
        f"/api/tasks/{task['id']}/fail",
        params={"lease": task["lease"]},
        headers=NODE,
        json={"node": "n1", "message": "out of memory"},
    )
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "error"
    (farm.settings.data / "projects" / pid / "chunks" / "1-1-1.png").unlink()  # lost meanwhile
    farm.client.post(f"/api/projects/{pid}/retry", headers=ADMIN)
    assert farm.client.get(f"/api/projects/{pid}").json()["chunks_done"] == 3
    farm.run_all()
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"


def test_a_full_disk_is_a_clear_507(farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(farm.farm.submissions, "submit", full)
    assert "disk is full" in assert_error(farm.submit(), 507)
    assert not list((farm.settings.data / "tmp").iterdir())


def test_huge_logs_from_nodes_are_truncated_not_refused(farm: InProcessFarm) -> None:
    farm.register()
    resp = farm.client.post(
        "/api/nodes/n1/heartbeat", headers=NODE, json={"tasks": [], "log": ["x" * 5_000] * 2_000}
    )
    assert resp.status_code == 200
    lines = farm.client.get("/api/nodes/n1/log").json()["lines"]
    assert 0 < len(lines) <= 200 and all(len(line) <= 2000 for line in lines)


def test_files_saved_by_a_newer_blender_wait_for_a_node_that_can_open_them(
    farm: InProcessFarm,
) -> None:
    farm.register("old")  # Blender 3.4.1
    newer = fake_project_zip(header=b"BLENDER-v500")
    pid = farm.submit({"frame": "1"}, content=newer).json()["id"]
    assert farm.lease("old") is None
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["file_version"] == "5.0"
    assert "Blender 5.0 or newer" in p["waiting"] and "3.4.1" in p["waiting"]
    farm.client.post("/api/nodes/new/register", headers=NODE, json={"blender_version": "5.0.1"})
    assert farm.lease("new") is not None


def test_a_blend_that_is_not_one_is_refused(farm: InProcessFarm) -> None:
    bogus = fake_project_zip(header=b"NOTBLEND")
    assert "is not a .blend file" in assert_error(farm.submit({}, content=bogus), 400)


def test_secrets_are_made_once_private_and_hashed(tmp_path: Path) -> None:
    import json
    import stat

    from blendfarm.server.auth import check_password, load_secrets

    first = load_secrets(tmp_path)
    assert set(first.created) == {"token", "password"}
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert first.created["password"] not in path.read_text()
    assert check_password(first.created["password"], stored["password"])
    again = load_secrets(tmp_path)
    assert again.created == {} and again.token == first.token
    given = load_secrets(tmp_path, token="mine", password="my-password")
    assert given.token == "mine" and check_password("my-password", given.password_hash)


def test_the_dashboard_is_told_where_the_api_is(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from blendfarm.server.app import create_ui_app
    from blendfarm.settings import Settings

    ui = TestClient(
        create_ui_app(Settings(data=tmp_path, api_port=3123)), base_url="http://localhost:8080"
    )
    assert ui.get("/config.js").text.strip() == "window.BLENDFARM_API_PORT = 3123;"
    page = ui.get("/")
    assert page.status_code == 200 and "config.js" in page.text
    assert ui.get("/nope.html").status_code == 404


def test_a_node_that_fails_three_chunks_is_barred_from_that_project(farm: InProcessFarm) -> None:
    for n in ("flaky", "good"):
        farm.register(n)
    pid = farm.submit({"frame": "1", "tiles": "3"}).json()["id"]
    other = farm.submit({"frame": "1"}).json()["id"]
    farm.answer(farm.lease("good"))  # the first project's probe
    failed = 0
    while failed < 3:
        task = farm.lease("flaky")
        assert task is not None
        if task["project"] != pid:
            farm.answer(task)
            continue
        farm.client.post(
            f"/api/tasks/{task['id']}/fail",
            params={"lease": task["lease"]},
            headers=NODE,
            json={"node": "flaky", "message": "Error: GPU lost"},
        )
        failed += 1
    p = farm.client.get(f"/api/projects/{pid}").json()
    assert p["blocklist"] == ["flaky"] and p["state"] == "rendering"
    while (task := farm.lease("flaky")) is not None:  # it still works for other projects
        assert task["project"] == other
        farm.answer(task)
    assert farm.client.get(f"/api/projects/{other}").json()["chunks_done"] == 1
    assert farm.run_all("good") == 9
    assert farm.client.get(f"/api/projects/{pid}").json()["state"] == "done"


def test_zips_made_by_other_tools_are_read_the_same(farm: InProcessFarm) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("./shots/scene.blend", b"BLENDER-v304" + bytes(64))
        zf.writestr("shots\\textures\\a.png", b"x")  # Windows tools write backslashes
    resp = farm.submit({"frame": "1", "blend": "shots/scene.blend"}, content=buf.getvalue())
    assert resp.status_code == 201, resp.text
    assert resp.json()["blend"] == "shots/scene.blend"


def test_the_event_stream_builds_each_snapshot_once_for_all_watchers(farm: InProcessFarm) -> None:
    version = farm.farm.store.db.version
    first = farm.farm.views.status_event(version)
    assert first.startswith(b"event: status\ndata: {") and first.endswith(b"\n\n")
    assert farm.farm.views.status_event(version) is first  # a second watcher gets the same text
    farm.submit()
    fresh = farm.farm.views.status_event(farm.farm.store.db.version)
    assert fresh is not first and b'"title":"scene"' in fresh


def test_wrong_guesses_slow_an_address_down_but_never_lock_the_admin_out() -> None:
    from blendfarm.server.auth import LONGEST_WAIT, Guard, Secrets, guess_wait, hash_password

    guard = Guard(Secrets(token="t", password_hash=hash_password("right-one"), created={}))
    t = 1000.0
    for _ in range(5):  # a few free guesses...
        with pytest.raises(Forbidden):
            guard.check_password("wrong", "10.0.0.9", now=t)
    with pytest.raises(TooManyRequests):  # ...then the waits begin, and during one...
        guard.check_password("wrong", "10.0.0.9", now=t + 0.5)
    with pytest.raises(TooManyRequests):  # ...nothing is checked, not even the right one
        guard.check_password("right-one", "10.0.0.9", now=t + 0.5)
    guard.check_password("right-one", "10.0.0.7", now=t)  # other addresses are not held up
    for _ in range(40):  # a guesser keeps trying: the wait grows but stops at LONGEST_WAIT
        t += guess_wait(100)
        with pytest.raises(Forbidden):
            guard.check_password("wrong", "10.0.0.9", now=t)
    assert guess_wait(1000) == LONGEST_WAIT
    guard.check_password("right-one", "10.0.0.9", now=t + LONGEST_WAIT)  # the admin gets in
    for _ in range(5):  # and a success starts the count afresh
        with pytest.raises(Forbidden):
            guard.check_password("wrong", "10.0.0.9", now=t + LONGEST_WAIT)


def test_node_logs_and_failures_never_show_the_node_token(farm: InProcessFarm) -> None:
    farm.register()
    beat = {"tasks": [], "log": [f"BLENDFARM_TOKEN={NODE['Authorization'][7:]} was in the env"]}
    assert farm.client.post("/api/nodes/n1/heartbeat", headers=NODE, json=beat).status_code == 200
    lines = farm.client.get("/api/nodes/n1/log").json()["lines"]
    assert lines == ["BLENDFARM_TOKEN=**** was in the env"]
    farm.submit({"frame": "1"})
    task = farm.lease()
    assert task is not None
    failure = {"node": "n1", "message": f"token {NODE['Authorization'][7:]}", "log": []}
    farm.client.post(
        f"/api/tasks/{task['id']}/fail", params={"lease": task["lease"]}, headers=NODE, json=failure
    )
    assert NODE["Authorization"][7:] not in farm.client.get("/api/status").text


def _chunked_form(payload: bytes, boundary: str = "bf") -> tuple[dict[str, str], object]:
    """A multipart submission sent without Content-Length (chunked), in 64 KiB pieces."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="frame"\r\n\r\n1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    body = head + payload + f"\r\n--{boundary}--\r\n".encode()
    pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, pieces


def test_upload_limits_count_the_bytes_that_arrive_not_the_headers(tmp_path: Path) -> None:
    farm = InProcessFarm(tmp_path, max_upload=100_000)
    headers, pieces = _chunked_form(b"x" * 300_000)
    assert "larger than 100000" in assert_error(
        farm.client.post("/api/projects", headers=headers, content=pieces), 413
    )
    # The disk reserve is measured as the bytes land too (here: more than the disk has).
    roomy = InProcessFarm(tmp_path / "r", disk_reserve=2**62)
    headers, pieces = _chunked_form(fake_project_zip())
    assert_error(roomy.client.post("/api/projects", headers=headers, content=pieces), 507)
    for f in (farm, roomy):
        assert not list((f.settings.data / "tmp").iterdir())
        assert f.client.get("/api/projects").json() == []


def test_a_submission_is_written_once_and_adopted_in_place(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []
    real = farm.farm.data.temp_file

    def recording(suffix: str = "") -> Path:
        made.append(real(suffix))
        return made[-1]

    def spool(*args: object, **kwargs: object) -> None:
        raise AssertionError("the upload was spooled to a second temporary file")

    monkeypatch.setattr(farm.farm.data, "temp_file", recording)
    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", spool)  # starlette's form spool
    headers, pieces = _chunked_form(fake_project_zip())
    resp = farm.client.post("/api/projects", headers=headers, content=pieces)
    assert resp.status_code == 201, resp.text
    archive = farm.farm.data.archive(resp.json()["id"])
    assert len(made) == 1  # one file on the data disk for the upload, no spool copy
    assert archive.read_bytes() == fake_project_zip()
    assert not made[0].exists()  # renamed into the project, not copied


def test_only_the_owner_or_the_admin_may_delete_or_retry_a_project(farm: InProcessFarm) -> None:
    answer = farm.submit({"frame": "1"}).json()
    pid, key = answer["id"], answer["owner_key"]
    assert key and farm.client.get(f"/api/projects/{pid}").json()["owner_key"] is None
    assert "owner key" in assert_error(farm.client.delete(f"/api/projects/{pid}"), 403)
    wrong = {"X-Blendfarm-Owner-Key": "not-the-key"}
    assert_error(farm.client.delete(f"/api/projects/{pid}", headers=wrong), 403)
    other = farm.submit({"frame": "1"}).json()  # another project's key opens nothing else
    mixed = {"X-Blendfarm-Owner-Key": other["owner_key"]}
    assert_error(farm.client.delete(f"/api/projects/{pid}", headers=mixed), 403)
    assert_error(farm.client.post(f"/api/projects/{pid}/retry"), 403)
    assert_error(  # the owner may retry (here: it is not in error, so the state says no)
        farm.client.post(f"/api/projects/{pid}/retry", headers={"X-Blendfarm-Owner-Key": key}),
        409,
    )
    bad_password = {"X-Blendfarm-Password": "guess"}
    assert_error(farm.client.delete(f"/api/projects/{pid}", headers=bad_password), 403)
    mine = {"X-Blendfarm-Owner-Key": key}
    assert farm.client.delete(f"/api/projects/{pid}", headers=mine).json()["deleted"] == pid
    assert farm.client.delete(f"/api/projects/{other['id']}", headers=ADMIN).status_code == 200


def test_a_project_too_big_for_the_farm_is_refused_with_a_sentence(farm: InProcessFarm) -> None:
    # At submit, when the frames are given: 100,000 frames in 64x64 chunks is 409,600,000.
    message = assert_error(farm.submit({"frames": "1-100000", "tiles": "64"}), 400)
    assert "more than this farm takes" in message and "409600000" in message
    assert not list((farm.settings.data / "tmp").iterdir())
    assert farm.client.get("/api/projects").json() == []
    # At planning, for the scene's own frame range and size.
    for probe, says in (
        ({**PROBE, "frame_start": 1, "frame_end": 300_000}, "300000 frames"),
        ({**PROBE, "resolution_x": 65536, "resolution_y": 65536}, "16384 per side"),
    ):
        pid = farm.submit({"tiles": "2"}).json()["id"]
        task = farm.lease()
        assert task is not None and task["kind"] == "probe"
        farm.answer(task, probe)
        project = farm.client.get(f"/api/projects/{pid}").json()
        assert project["state"] == "error" and says in project["error"], project["error"]
        assert project["chunks_total"] == 0


def test_health_answers_while_a_quarter_million_chunks_are_planned(tmp_path: Path) -> None:
    import threading

    farm = InProcessFarm(tmp_path)
    pid = farm.submit({"frames": "1-61", "tiles": "64"}).json()["id"]  # 249,856 chunks
    probe = farm.lease()
    assert probe is not None
    answered_during: list[float] = []  # health answers while some chunks were made, not all
    size = {"resolution_x": 640, "resolution_y": 480}
    planning = threading.Thread(target=farm.answer, args=(probe, {**PROBE, **size}))
    planning.start()
    while planning.is_alive():
        started = time.monotonic()
        assert farm.client.get("/api/health").status_code == 200
        took = time.monotonic() - started
        made = farm.farm.store.projects.counts(pid).get(pid)
        if made is not None and 0 < made.total < 61 * 64 * 64:
            answered_during.append(took)
    planning.join()
    # The store was free between batches of chunks: health answered while the plan was being
    # made. (How fast is measured in bench/, not asserted here.)
    assert answered_during, "no health answer while the chunks were being made"
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["chunks_total"] == 61 * 64 * 64 and project["state"] == "queued"
    print(
        f"health during planning: {len(answered_during)} answers, "
        f"slowest {max(answered_during) * 1000:.0f} ms"
    )


def test_a_node_waiting_for_work_gets_it_the_moment_it_exists(
    farm: InProcessFarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from blendfarm.server import routes_nodes

    monkeypatch.setattr(routes_nodes, "RECHECK", 60.0)  # only the bell can wake the wait
    assert farm.client.post("/api/nodes/n1/lease?wait=0", headers=NODE).status_code == 204
    assert_error(farm.client.post("/api/nodes/n1/lease?wait=600", headers=NODE), 400)
    answers: list[int] = []

    def wait_for_work() -> None:
        resp = farm.client.post("/api/nodes/n1/lease?wait=45", headers=NODE)
        answers.append(resp.status_code)

    waiting = threading.Thread(target=wait_for_work)
    waiting.start()
    time.sleep(0.5)  # the node is waiting now...
    assert waiting.is_alive() and not answers
    farm.submit({"frame": "1"})  # ...and work appears: its probe goes to the waiting node
    waiting.join(15)
    assert answers == [200], "the waiting node was not woken by the new project"


def test_a_node_that_leaves_hands_back_what_it_held(farm: InProcessFarm) -> None:
    farm.register("n1")
    farm.submit({"frame": "1"})
    task = farm.lease("n1")
    assert task is not None
    assert farm.client.post("/api/nodes/n1/leave", headers=NODE).status_code == 200
    again = farm.lease("n2")  # at once, not after the lease runs out
    assert again is not None and again["id"] == task["id"]


def test_a_result_can_bring_the_nodes_next_task(farm: InProcessFarm) -> None:
    pid = farm.submit({"frame": "1", "tiles": "2"}).json()["id"]
    farm.answer(farm.lease())  # the probe
    task = farm.lease("n1")
    assert task is not None
    seen: set[int] = {task["id"]}
    for _ in range(3):
        rect = task["rect"]
        resp = farm.client.put(
            f"/api/tasks/{task['id']}/result",
            params={"lease": task["lease"], "next": "cpu", "node": "n1"},
            headers=NODE,
            content=png_bytes(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"]),
        )
        assert resp.status_code == 200 and resp.json()["accepted"] is True
        task = resp.json()["next"]  # leased to n1 as a lease request would have
        assert task is not None and task["kind"] == "chunk" and task["id"] not in seen
        seen.add(task["id"])
    project = farm.client.get(f"/api/projects/{pid}").json()
    assert project["chunks_done"] == 3 and project["chunks_rendering"] == 1
    last = farm.client.put(
        f"/api/tasks/{task['id']}/result",
        params={"lease": task["lease"], "next": "cpu", "node": "n1"},
        headers=NODE,
        content=png_bytes(1, 1),
    )
    assert last.status_code == 400  # a wrong size: refused, and no task handed out with it
    assert farm.client.get(f"/api/projects/{pid}").json()["chunks_rendering"] == 1


def test_a_result_asking_for_a_next_task_nobody_can_have_is_refused_untaken(
    farm: InProcessFarm,
) -> None:
    farm.submit({"frame": "1", "tiles": "2"})
    farm.answer(farm.lease())
    task = farm.lease("n1")
    assert task is not None
    rect = task["rect"]
    body = png_bytes(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"])
    for params in ({"next": "tpu", "node": "n1"}, {"next": "cpu", "node": "../x"}):
        resp = farm.client.put(
            f"/api/tasks/{task['id']}/result",
            params={"lease": task["lease"], **params},
            headers=NODE,
            content=body,
        )
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_input"
    assert not list((farm.farm.data.root / "tmp").iterdir())
    assert farm.client.get(f"/api/projects/{task['project']}").json()["chunks_done"] == 0
    resp = farm.client.put(
        f"/api/tasks/{task['id']}/result",
        params={"lease": task["lease"], "next": "cpu", "node": "n1"},
        headers=NODE,
        content=body,
    )
    assert resp.json()["accepted"] is True and resp.json()["next"]["kind"] == "chunk"
