from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apphelpers import InProcessFarm, fake_project_zip
from blendfarm.cli.main import app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def run(runner: CliRunner, farm: InProcessFarm, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), obj=farm.client, input=input)


def test_submit_status_fetch_rm(runner: CliRunner, farm: InProcessFarm, tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    archive.write_bytes(fake_project_zip())
    res = run(runner, farm, "submit", str(archive), "--frame", "1", "--tiles", "2", "--json")
    assert res.exit_code == 0, res.output
    pid = json.loads(res.stdout)["id"]
    farm.run_all()
    res = run(runner, farm, "status", pid, "--json")
    assert json.loads(res.stdout)["state"] == "done"
    res = run(runner, farm, "status")
    assert pid in res.stdout and "done" in res.stdout and "4/4" in res.stdout
    res = run(runner, farm, "fetch", pid, "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    written = Path(res.stdout.strip().splitlines()[-1])
    assert written.suffix == ".png" and written.read_bytes()[:4] == b"\x89PNG"
    res = run(runner, farm, "fetch", pid, "--raw", "-o", str(tmp_path / "out"))
    with zipfile.ZipFile(res.stdout.strip().splitlines()[-1]) as zf:
        assert len(zf.namelist()) == 4
    res = run(runner, farm, "rm", pid, input="n\n")
    assert res.exit_code == 1
    res = run(runner, farm, "rm", pid, "--yes")
    assert res.exit_code == 0 and "freed" in res.stdout
    assert json.loads(run(runner, farm, "status", "--json").stdout) == []


def test_a_folder_is_zipped_by_the_cli(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    folder = tmp_path / "proj"
    (folder / "tex").mkdir(parents=True)
    (folder / "shot.blend").write_bytes(b"BLENDER-v304" + b"\0" * 10)
    (folder / "shot.blend1").write_bytes(b"BLENDER-v304")
    (folder / "tex" / "a.png").write_bytes(b"x")
    res = run(runner, farm, "submit", str(folder), "--frames", "1-3", "--json")
    assert res.exit_code == 0, res.output
    project = json.loads(res.stdout)
    assert project["blend"] == "shot.blend" and project["animation"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "nope"], "no project 'nope'"),
        (["fetch", "nope"], "no project 'nope'"),
        (["rm", "nope", "--yes"], "no project 'nope'"),
        (["submit", "/does/not/exist.zip"], "does not exist"),
        (["submit", "{zip}", "--frames", "5-2"], "ends before it starts"),
        (["submit", "{zip}", "--frame", "1", "--frames", "1-2"], "not both"),
        (["submit", "{notzip}"], "neither a zip"),
    ],
)
def test_mistakes_end_in_one_line_and_a_non_zero_exit(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "p.zip").write_bytes(fake_project_zip())
    (tmp_path / "x.zip").write_bytes(b"no zip here")
    args = [
        a.replace("{zip}", str(tmp_path / "p.zip")).replace("{notzip}", str(tmp_path / "x.zip"))
        for a in args
    ]
    res = run(runner, farm, *args)
    assert res.exit_code == 1
    assert message in res.output
    assert "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def test_unfinished_projects_cannot_be_fetched(runner: CliRunner, farm: InProcessFarm) -> None:
    pid = farm.submit().json()["id"]
    res = run(runner, farm, "fetch", pid)
    assert res.exit_code == 1 and "not finished yet" in res.output


def test_an_unreachable_server_is_one_line(runner: CliRunner) -> None:
    res = runner.invoke(app, ["--server", "http://127.0.0.1:9", "status"])
    assert res.exit_code == 1
    assert "cannot reach the server" in res.output and "Traceback" not in res.output


def test_serve_prints_the_config_and_where_it_came_from(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "blendfarm.toml").write_text("node_timeout = 42\n")
    res = runner.invoke(
        app,
        ["serve", "--data", str(tmp_path), "--api-port", "3000", "--print-config"],
        env={"BLENDFARM_UI_PORT": "3001", "COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    lines = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if "│" in line}
    assert "command line" in lines["api_port"] and "3000" in lines["api_port"]
    assert "env BLENDFARM_UI_PORT" in lines["ui_port"]
    assert "blendfarm.toml" in lines["node_timeout"] and "42" in lines["node_timeout"]
    assert "default" in lines["host"]


def test_help_explains_every_command(runner: CliRunner) -> None:
    res = runner.invoke(app, ["--help"])
    for command in ("serve", "node", "submit", "status", "fetch", "rm", "retry"):
        assert command in res.stdout


def test_passwd_and_purge_need_the_admin_password(runner: CliRunner, tmp_path: Path) -> None:
    farm = InProcessFarm(tmp_path, password="")  # the password made once in the data dir
    first = farm.farm.guard.secrets.created["password"]
    farm.submit()
    res = run(runner, farm, "purge", "--yes", "--password", "wrong")
    assert res.exit_code == 1 and "wrong admin password" in res.output
    res = run(runner, farm, "passwd", "--password", first, "--new-password", "a-new-secret")
    assert res.exit_code == 0, res.output
    res = run(runner, farm, "purge", "--yes", "--password", first)
    assert res.exit_code == 1 and "wrong admin password" in res.output
    res = run(runner, farm, "purge", "--password", "a-new-secret", input="y\n")
    assert res.exit_code == 0, res.output
    assert farm.client.get("/api/projects").json() == []
    res = run(runner, farm, "passwd", "--password", "a-new-secret", "--new-password", "short")
    assert res.exit_code == 1 and "8 to 200" in res.output


def test_passwd_is_refused_while_the_password_comes_from_the_environment(
    runner: CliRunner, farm: InProcessFarm
) -> None:
    res = run(runner, farm, "passwd", "--password", "pw-456", "--new-password", "a-new-secret")
    assert res.exit_code == 1 and "BLENDFARM_PASSWORD" in res.output
    assert "Traceback" not in res.output
    res = run(runner, farm, "purge", "--yes", "--password", "pw-456")  # still the same one
    assert res.exit_code == 0, res.output


def test_check_shows_the_plan_and_sends_nothing(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    folder = tmp_path / "proj"
    (folder / "tex").mkdir(parents=True)
    (folder / "shot.blend").write_bytes(b"BLENDER-v304" + b"\0" * 10)
    (folder / "tex" / "a.png").write_bytes(b"x" * 2048)
    res = run(
        runner, farm, "submit", str(folder), "--frames", "1-3", "--tiles", "2", "--check", "--json"
    )
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    assert plan["blend"] == "shot.blend" and plan["tiles"] == 2
    assert {f["name"] for f in plan["files"]} == {"shot.blend", "tex/a.png"}
    res = run(runner, farm, "submit", str(folder), "--check")
    assert "tex/a.png" in res.stdout and "the scene's frame range" in res.stdout
    assert farm.client.get("/api/projects").json() == []


def test_blender_uploads_are_checked(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    junk = tmp_path / "blender-4.2.0-linux-x64.tar.xz"
    junk.write_bytes(b"not a tarball")
    res = run(runner, farm, "blender", "upload", str(junk), "--password", "pw-456")
    assert res.exit_code == 1 and "not a readable tar archive" in res.output
    odd = tmp_path / "mystuff.tar.xz"
    odd.write_bytes(b"x")
    res = run(runner, farm, "blender", "upload", str(odd), "--password", "pw-456")
    assert res.exit_code == 1 and "not an official Blender build name" in res.output
    res = run(runner, farm, "blender", "upload", str(junk), "--password", "nope")
    assert res.exit_code == 1 and "wrong admin password" in res.output
    res = run(runner, farm, "blender", "status")
    assert "no Blender uploaded" in res.stdout
    assert not list((farm.settings.data / "tmp").iterdir())
    assert not list((farm.settings.data / "blender").iterdir())


def test_node_settings_come_from_flags_env_and_the_work_dir(
    runner: CliRunner, tmp_path: Path
) -> None:
    (tmp_path / "blendfarm.toml").write_text('threads = 3\nname = "from-file"\n')
    res = runner.invoke(
        app,
        ["node", "--work-dir", str(tmp_path), "--name", "from-flag", "--print-config"],
        env={"BLENDFARM_SERVER": "http://10.0.0.9:2254", "COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if "│" in line}
    assert "from-flag" in rows["name"] and "command line" in rows["name"]
    assert "3" in rows["threads"] and "blendfarm.toml" in rows["threads"]
    assert "http://10.0.0.9:2254" in rows["server"] and "env BLENDFARM_SERVER" in rows["server"]


def test_a_bad_config_file_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "blendfarm.toml").write_text("colour = 'blue'\n")
    res = runner.invoke(app, ["serve", "--data", str(tmp_path), "--print-config"])
    assert res.exit_code == 1 and "unknown setting 'colour'" in res.output


def test_shell_completion_is_offered(runner: CliRunner) -> None:
    res = runner.invoke(app, ["--show-completion", "bash"], env={"SHELL": "/bin/bash"})
    assert res.exit_code == 0 and "complete" in res.stdout and "blendfarm" in res.stdout


def test_a_folder_that_cannot_be_written_is_one_line(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path
) -> None:
    pid = farm.submit({"frame": "1"}).json()["id"]
    farm.run_all()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    res = run(runner, farm, "fetch", pid, "-o", str(blocker))
    assert res.exit_code == 1 and "not-a-folder" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
