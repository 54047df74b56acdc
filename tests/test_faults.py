"""Machines die, Blender fails: real processes are killed and the farm must lose nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apphelpers import PROBE, fake_project_zip, png_bytes
from helpers import (
    PASSWORD,
    TOKEN,
    FarmProcesses,
    full_disk,
    make_project,
    running_farm,
    zip_folder,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def slow_zip(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chunks that take a few seconds each: long enough to be killed mid-render."""
    folder = tmp_path_factory.mktemp("slow")
    make_project(blender, folder, samples=300, width=121, height=91)
    return zip_folder(folder, tmp_path_factory.mktemp("slowzip") / "slow.zip")


@pytest.fixture
def quick_farm(tmp_path: Path) -> Iterator[FarmProcesses]:
    with running_farm(tmp_path, node_timeout=3, serve_args=("--chunk-timeout", "4")) as farm:
        yield farm


def submit(farm: FarmProcesses, path: Path, *args: str) -> str:
    return farm.submit(path, *args)


def test_a_node_killed_mid_chunk_loses_nothing(quick_farm: FarmProcesses, slow_zip: Path) -> None:
    farm = quick_farm
    pid = submit(farm, slow_zip, "--frame", "1", "--tiles", "2")
    victim = farm.start_node("victim", "--threads", "1")
    farm.wait_node_rendering("victim")
    blenders = farm.children(victim)
    assert blenders, "the node should be running Blender"
    victim.kill()
    victim.wait()
    for child in blenders:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    farm.start_node("rescuer")
    done = farm.wait_state(pid, {"done", "error"}, timeout=180)
    assert done["state"] == "done", done
    nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
    assert nodes["victim"]["state"] == "offline"
    assert nodes["rescuer"]["chunks_done"] >= 1


def test_a_stopped_node_hands_its_chunk_back_at_once(
    quick_farm: FarmProcesses, slow_zip: Path
) -> None:
    farm = quick_farm
    pid = submit(farm, slow_zip, "--frame", "1")
    node = farm.start_node("leaver", "--threads", "1")
    farm.wait_node_rendering("leaver")
    blenders = farm.children(node)
    stopped_at = time.monotonic()
    node.send_signal(signal.SIGTERM)
    assert node.wait(timeout=20) == 0
    project = farm.project(pid)
    # Handed back at once: well before the lease (3 s) could have run out.
    assert time.monotonic() - stopped_at < 3
    assert project["chunks_rendering"] == 0 and project["chunks_done"] == 0
    assert all(
        not Path(f"/proc/{b}").exists() or Path(f"/proc/{b}/stat").read_text().split()[2] == "Z"
        for b in blenders
    )
    nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
    assert nodes["leaver"]["state"] == "offline"


def test_a_killed_server_resumes_every_project(tmp_path: Path, blender: str) -> None:
    folder = tmp_path / "anim"
    make_project(blender, folder, samples=40, width=81, height=61, start=1, end=6)
    archive = zip_folder(folder, tmp_path / "anim.zip")
    farm = FarmProcesses(tmp_path, node_timeout=4)
    farm.start_server()
    seen: list[int] = []
    stop = threading.Event()
    try:
        pid = submit(farm, archive, "--frames", "1-6", "--tiles", "2")
        farm.start_node("n1", "--threads", "1")
        farm.start_node("n2", "--threads", "1")

        def watch() -> None:
            while not stop.is_set():
                try:
                    seen.append(farm.project(pid)["chunks_done"])
                except Exception:
                    pass
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        deadline = time.monotonic() + 120
        while not seen or seen[-1] < 6:
            assert time.monotonic() < deadline, farm.logs()
            time.sleep(0.1)
        farm.stop_server(signal.SIGKILL)
        before = seen[-1]
        time.sleep(2)  # the nodes keep rendering and retrying meanwhile
        farm.start_server()
        done = farm.wait_state(pid, {"done", "error"}, timeout=180)
        stop.set()
        watcher.join()
        assert done["state"] == "done", done
        assert done["chunks_done"] == 24 and before < 24
        assert seen == sorted(seen), "chunks_done went down"
        assert all(p.poll() is None for p in farm.nodes.values()), "a node gave up"
        frames = farm.client.get(f"/api/projects/{pid}").json()["frames_done"]
        assert frames == 6
    finally:
        stop.set()
        farm.close()


def test_a_server_down_longer_than_the_node_timeout_keeps_its_nodes_leases(
    tmp_path: Path,
) -> None:
    # Found by bench/chaos.py --server-down 12: a restarted server requeued at once every
    # chunk its (live, rendering) nodes held, as their leases had run out while it was down.
    farm = FarmProcesses(tmp_path, node_timeout=2)
    farm.start_server()
    node = {"Authorization": f"Bearer {TOKEN}"}
    try:
        files = {"file": ("p.zip", fake_project_zip())}
        farm.client.post("/api/projects", data={"frame": "1"}, files=files).raise_for_status()

        def lease(name: str) -> dict:
            resp = farm.client.post(f"/api/nodes/{name}/lease", headers=node)
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

        probe = lease("n1")
        answer = f"/api/tasks/{probe['id']}/probe"
        farm.client.post(answer, params={"lease": probe["lease"]}, headers=node, json=PROBE)
        chunk = lease("n1")
        farm.stop_server(signal.SIGKILL)
        time.sleep(3)  # down longer than the node timeout: n1 renders on, unable to renew
        farm.start_server()
        time.sleep(1.5)  # the reaper has had its passes
        beat = farm.client.post(
            "/api/nodes/n1/heartbeat", headers=node, json={"tasks": [chunk["id"]], "log": []}
        )
        assert beat.json()["cancel"] == [], "the restart took n1's chunk away"
        rect = chunk["rect"]
        result = farm.client.put(
            f"/api/tasks/{chunk['id']}/result",
            params={"lease": chunk["lease"]},
            headers=node,
            content=png_bytes(rect["x1"] - rect["x0"], rect["y1"] - rect["y0"]),
        )
        assert result.json()["accepted"] is True
        assert farm.wait_state(str(chunk["project"]), {"done"}, timeout=30)["chunks_done"] == 1
    finally:
        farm.close()


def test_a_node_that_died_while_the_server_was_down_has_its_chunk_requeued(
    tmp_path: Path,
) -> None:
    farm = FarmProcesses(tmp_path, node_timeout=2)
    farm.start_server()
    node = {"Authorization": f"Bearer {TOKEN}"}
    try:
        files = {"file": ("p.zip", fake_project_zip())}
        farm.client.post("/api/projects", data={"frame": "1"}, files=files).raise_for_status()
        probe = farm.client.post("/api/nodes/n1/lease", headers=node).json()
        answer = f"/api/tasks/{probe['id']}/probe"
        farm.client.post(answer, params={"lease": probe["lease"]}, headers=node, json=PROBE)
        chunk = farm.client.post("/api/nodes/n1/lease", headers=node).json()
        farm.stop_server(signal.SIGKILL)
        time.sleep(3)
        farm.start_server()
        # n1 never speaks again: one node timeout after the start its chunk is free.
        deadline = time.monotonic() + 30
        while (resp := farm.client.post("/api/nodes/n2/lease", headers=node)).status_code != 200:
            assert time.monotonic() < deadline, farm.log("serve")
            time.sleep(0.2)
        assert resp.json()["id"] == chunk["id"]
    finally:
        farm.close()


def test_blender_failures_end_in_error_with_blenders_message(
    quick_farm: FarmProcesses, blender: str, tmp_path: Path
) -> None:
    farm = quick_farm
    folder = tmp_path / "denoise"
    make_project(blender, folder, denoise=1, width=41, height=31)
    denoised = submit(farm, zip_folder(folder, tmp_path / "dn.zip"), "--frame", "1")
    farm.start_node("only", "--threads", "1")
    p = farm.wait_state(denoised, {"error"}, timeout=120)
    assert "OpenImageDenoiser" in p["error"]
    status = farm.cli("status", denoised)
    assert "error" in status.stdout
    out = farm.cli("retry", denoised)
    assert "again" in out.stdout
    # It is tried again (and, Debian's Blender having no denoiser, fails again the same way).
    p = farm.wait_state(denoised, {"error"}, timeout=120)
    assert "OpenImageDenoiser" in p["error"]

    slow = tmp_path / "slow"
    make_project(blender, slow, samples=4000, width=61, height=47)
    # About 10 s of rendering on one thread; the server allows 4 s per chunk.
    hung = submit(farm, zip_folder(slow, tmp_path / "slow.zip"), "--frame", "1")
    p = farm.wait_state(hung, {"error", "done"}, timeout=120)
    assert p["state"] == "error" and "did not finish within 4 s" in p["error"]


def test_a_node_with_a_wrong_token_says_so_in_one_line(quick_farm: FarmProcesses) -> None:
    env = dict(quick_farm.env, BLENDFARM_TOKEN="wrong")
    import subprocess

    from helpers import BLENDFARM

    proc = subprocess.run(
        [*BLENDFARM, "node", "--work-dir", str(quick_farm.root / "w")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "refused this node's token" in proc.stderr and "Traceback" not in proc.stderr


def test_a_server_killed_while_compositing_finishes_after_a_restart(
    tmp_path: Path, project_zip: Path
) -> None:
    import sqlite3

    farm = FarmProcesses(tmp_path)
    farm.start_server()
    try:
        pid = submit(farm, project_zip, "--frames", "1-4", "--tiles", "2")
        folder = tmp_path / "data" / "projects" / pid
        farm.start_node("n1")
        # The zips are written under temporary names once every frame is in (the mp4 is
        # encoded while rendering), then renamed: kill the server the moment the first one
        # appears, in the middle of compositing.
        deadline = time.monotonic() + 180
        while not any(p.name.startswith((".raw.zip.", ".frames.zip.")) for p in folder.iterdir()):
            # (no request in this loop: compositing now takes milliseconds)
            assert time.monotonic() < deadline and not (folder / "frames.zip").exists(), (
                "compositing was never seen\n" + farm.logs()
            )
            time.sleep(0.0005)
        farm.stop_server(signal.SIGKILL)
        with sqlite3.connect(tmp_path / "data" / "blendfarm.db") as db:
            (state,) = db.execute("SELECT state FROM projects WHERE id = ?", (pid,)).fetchone()
        assert state == "compositing"
        assert not (folder / "result.mp4").exists()
        farm.start_server()
        done = farm.wait_state(pid, {"done", "error"}, timeout=60)
        assert done["state"] == "done" and done["chunks_done"] == 16, done
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(folder / "result.mp4"))
        next(reader)
        assert len(list(reader)) == 4
    finally:
        farm.close()


def test_a_full_server_disk_fails_chunks_clearly_and_the_farm_recovers(
    tmp_path: Path, blender: str
) -> None:
    # A frame of noise too big for the database's small images: its result is a file.
    folder = tmp_path / "big"
    make_project(blender, folder, width=400, height=300, samples=2)
    farm = FarmProcesses(tmp_path, serve_args=("--node-timeout", "3"))
    farm.env["BLENDFARM_DISK_RESERVE"] = "0"
    farm.start_server()
    spool = tmp_path / "data" / "tmp"  # where big results land before they are kept
    try:
        pid = submit(farm, zip_folder(folder, tmp_path / "big.zip"), "--frame", "1")
        chunks = tmp_path / "data" / "projects" / pid / "chunks"  # where results are kept
        with full_disk(spool) as free_spool, full_disk(chunks) as free_chunks:
            farm.start_node("n1")
            p = farm.wait_state(pid, {"error", "done"}, timeout=120)
            assert p["state"] == "error" and "disk is full" in p["error"], p
            assert farm.client.get("/api/health").status_code == 200  # the server lives on
            free_chunks()
            free_spool()
            farm.cli("retry", pid)
            assert farm.wait_state(pid, {"error", "done"}, timeout=120)["state"] == "done"
        assert [p.name for p in chunks.iterdir()] == ["1-0-0.png"]  # a file, as it was meant
    finally:
        farm.close()


def test_a_node_that_keeps_failing_is_blocklisted_and_the_others_finish(
    tmp_path: Path, blender: str
) -> None:
    farm = FarmProcesses(tmp_path)
    farm.start_server()
    try:
        # Where the node's Blender writes its chunks is full: it cannot deliver a single one.
        with full_disk(tmp_path / "work-broken" / "out"):
            folder = tmp_path / "heavy"  # chunks of about half a second each on one thread
            make_project(blender, folder, samples=1000, width=121, height=91)
            pid = submit(
                farm, zip_folder(folder, tmp_path / "heavy.zip"), "--frame", "1", "--tiles", "4"
            )
            farm.start_node("broken", "--threads", "1")
            farm.start_node("good", "--threads", "1")
            done = farm.wait_state(pid, {"done", "error"}, timeout=180)
            assert done["state"] == "done", done
            assert done["blocklist"] == ["broken"]
            nodes = {n["name"]: n for n in farm.client.get("/api/nodes").json()}
            assert nodes["broken"]["chunks_done"] == 0 and nodes["good"]["chunks_done"] == 16
            admin = {"X-Blendfarm-Password": PASSWORD}
            log = farm.client.get("/api/logs", headers=admin).json()["lines"]
            assert any("failed on broken: Blender wrote a damaged image" in line for line in log)
            assert "blocked: broken" in farm.cli("status", pid).stdout
            farm.close()  # the node lets go of the full disk before it is unmounted
    finally:
        farm.close()


def test_a_forwarded_address_does_not_escape_the_guess_limit(quick_farm: FarmProcesses) -> None:
    # A guesser on the server's own machine sends a new X-Forwarded-For with every guess;
    # the server believes no proxy unless told, so every guess counts against 127.0.0.1.
    answers = [
        quick_farm.client.post(
            "/api/purge",
            headers={"X-Blendfarm-Password": "guess", "X-Forwarded-For": f"10.9.8.{i}"},
        ).status_code
        for i in range(8)
    ]
    assert answers[:5] == [403] * 5 and 429 in answers[5:], answers


def test_a_damaged_project_fails_its_task_and_the_node_renders_the_next_one(
    quick_farm: FarmProcesses, project_dir: Path, tmp_path: Path
) -> None:
    import hashlib
    import sqlite3
    import zipfile

    farm = quick_farm
    stored = tmp_path / "stored.zip"  # members stored, so a byte of the texture is easy to hit
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(project_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(project_dir).as_posix())
    bad = submit(farm, stored, "--frame", "1")
    # The disk under the server goes bad after the upload was checked: a texture byte flips
    # (the server's own record of the archive's hash is made to agree, as if it had been so).
    archive = farm.root / "data" / "projects" / bad / "project.zip"
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".png"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with sqlite3.connect(farm.root / "data" / "blendfarm.db") as db:
        db.execute(
            "UPDATE projects SET sha256 = ? WHERE id = ?", (hashlib.sha256(data).hexdigest(), bad)
        )
    node = farm.start_node("sturdy")
    failed = farm.wait_state(bad, {"error", "done"}, timeout=120)
    assert failed["state"] == "error" and "checksum does not match" in failed["error"]
    assert "Traceback" not in failed["error"]
    good = submit(farm, stored, "--frame", "1")
    assert farm.wait_state(good, {"error", "done"}, timeout=180)["state"] == "done"
    assert node.poll() is None, "the node ended on a damaged project"


def test_strangers_on_the_lan_cannot_change_the_farm(quick_farm: FarmProcesses) -> None:
    import httpx

    farm = quick_farm
    with httpx.Client(base_url=farm.url, timeout=30) as stranger:  # a bare client, no secrets
        junk = {"file": ("p.zip", b"PK\x05\x06" + b"\0" * 18)}
        refused = stranger.post("/api/projects", files=junk)
        assert refused.status_code == 400  # anyone may submit; this one is no project
        assert stranger.get("/api/logs").status_code == 403
        assert stranger.post("/api/purge").status_code == 403
        evil = {"Origin": "http://evil.example"}
        assert stranger.post("/api/projects", files=junk, headers=evil).status_code == 403
        rebound = stranger.get("/api/status", headers={"Host": "evil.example"})
        assert rebound.status_code == 400
        cors = stranger.get("/api/status", headers=evil)
        assert "access-control-allow-origin" not in cors.headers
