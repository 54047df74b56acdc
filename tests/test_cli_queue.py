"""The queue's commands against an in-process server: priority, pause, resume, cancel,
requeue, nodes, and the options of submit and status that steer the queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apphelpers import NODE, InProcessFarm, fake_project_zip
from blendfarm.cli.main import app
from test_cli import run


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "160", "NO_COLOR": "1", "BLENDFARM_SERVER": None})


def submit(runner: CliRunner, farm: InProcessFarm, tmp_path: Path, *options: str) -> str:
    archive = tmp_path / "p.zip"
    archive.write_bytes(fake_project_zip())
    res = run(runner, farm, "submit", str(archive), "--json", *options)
    assert res.exit_code == 0, res.output
    return str(json.loads(res.stdout)["id"])


def state(farm: InProcessFarm, pid: str) -> str:
    return str(farm.client.get(f"/api/projects/{pid}").json()["state"])


def test_the_submitter_pauses_resumes_cancels_and_retries(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = submit(runner, farm, tmp_path, "--frames", "1-3", "--paused", "--priority", "70")
    assert state(farm, pid) == "paused" and farm.lease() is None
    res = run(runner, farm, "status")
    assert "paused" in res.stdout and "70" in res.stdout and "ETA" in res.stdout
    assert run(runner, farm, "resume", pid).stdout.strip() == f"{pid} is queued"
    assert "is paused" in run(runner, farm, "pause", pid).stdout
    assert run(runner, farm, "priority", pid, "90").stdout.strip() == f"{pid} has priority 90"
    assert "is cancelled" in run(runner, farm, "cancel", pid).stdout
    res = run(runner, farm, "cancel", pid)
    assert res.exit_code == 1 and "cannot be cancelled" in res.output
    assert "is queued again" in run(runner, farm, "retry", pid).stdout


def test_another_shell_needs_the_admin_password(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = submit(runner, farm, tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "elsewhere"))  # no owner key here
    for args in (["pause", pid], ["cancel", pid], ["priority", pid, "1"]):
        res = run(runner, farm, *args)
        assert res.exit_code == 1 and "owner key" in res.output, res.output
    assert run(runner, farm, "pause", pid, "--password", "pw-456").exit_code == 0


def test_status_shows_the_eta_range_while_chunks_render(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    clock = [1000.0]
    farm.farm.store.db.clock = lambda: clock[0]
    pid = submit(runner, farm, tmp_path, "--frames", "1-4", "--order", "sequential")
    farm.answer(farm.lease())  # the probe
    for seconds in (60.0, 120.0):
        task = farm.lease()
        clock[0] += seconds
        farm.answer(task)
    assert farm.lease() is not None  # one node works on the two frames left
    res = run(runner, farm, "status", pid)
    assert "ETA" in res.stdout and "2 min – 3 min" in res.stdout, res.stdout


def test_requeue_takes_frames_or_chunks(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = submit(runner, farm, tmp_path, "--frames", "1-2", "--tiles", "2")
    farm.run_all()
    res = run(runner, farm, "requeue", pid, "--frames", "2")
    assert res.stdout.strip() == f"4 chunk(s) of {pid} queued again"
    res = run(runner, farm, "requeue", pid, "--chunk", "1:0:1", "--chunk", "1:1:1")
    assert res.stdout.strip() == f"2 chunk(s) of {pid} queued again"
    for wrong in ([], ["--frames", "1", "--chunk", "1:0:0"], ["--chunk", "1-0-0"]):
        res = run(runner, farm, "requeue", pid, *wrong)
        assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output


def test_nodes_lists_and_the_admin_disables_and_enables(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    farm.client.post(
        "/api/nodes/gpu-box/register",
        headers=NODE,
        json={"blender_version": "3.4.1", "tags": ["gpu"]},
    )
    pid = submit(runner, farm, tmp_path, "--require-tag", "gpu", "--order", "sequential")
    task = farm.lease("gpu-box")
    assert task is not None and task["project"] == pid
    res = run(runner, farm, "nodes")
    for text in ("gpu-box", "rendering", "3.4.1", "gpu", f"{pid} probe", "Devices"):
        assert text in res.stdout, res.stdout
    res = run(runner, farm, "nodes", "disable", "gpu-box", "--password", "pw-456")
    assert res.stdout.strip() == "node gpu-box is disabled"
    farm.answer(task)
    assert farm.lease("gpu-box") is None
    assert "disabled" in run(runner, farm, "nodes").stdout
    nodes = json.loads(run(runner, farm, "nodes", "--json").stdout)
    assert nodes[0]["disabled"] is True
    res = run(runner, farm, "nodes", "enable", "gpu-box", "--password", "pw-456")
    assert res.exit_code == 0 and farm.lease("gpu-box") is not None


def test_submit_refuses_an_unknown_order_or_tag_in_one_line(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    archive = tmp_path / "p.zip"
    archive.write_bytes(fake_project_zip())
    for bad in (["--order", "random"], ["--require-tag", "two words"], ["--notify", "nope"]):
        res = run(runner, farm, "submit", str(archive), *bad)
        assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output


def test_node_refuses_a_schedule_or_tags_that_are_not_ones(
    runner: CliRunner, tmp_path: Path
) -> None:
    for bad in (["--schedule", "weekdays 9-5"], ["--tags", "a b"]):
        res = runner.invoke(app, ["node", "--work-dir", str(tmp_path), *bad])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
