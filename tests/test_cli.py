from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from apphelpers import InProcessFarm, fake_project_zip
from blendfarm.cli.main import app
from blendfarm.settings import NodeSettings, Settings, declared

ROOT = Path(__file__).resolve().parent.parent
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, connecting fails at once


@pytest.fixture
def runner() -> CliRunner:
    # BLENDFARM_SERVER from the shell running the tests would pick a server for the CLI.
    return CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1", "BLENDFARM_SERVER": None})


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


def test_shell_completion_is_offered(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import shellingham

    # typer finds the shell among the test's parent processes: a run started in the
    # background (its parent shell gone) has none, so this says the user's shell is bash.
    monkeypatch.setattr(shellingham, "detect_shell", lambda *a, **k: ("bash", "/bin/bash"))
    res = runner.invoke(app, ["--show-completion"])
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


# -- where --server goes ----------------------------------------------------------------------

# One call per client command that reaches the server, and what only the server can answer.
CLIENT_CALLS: dict[str, tuple[list[str], str]] = {
    "submit": (["submit", "{zip}", "--frame", "1"], "submitted"),
    "status": (["status"], "node(s) online"),
    "fetch": (["fetch", "nope"], "no project 'nope'"),
    "rm": (["rm", "nope", "--yes"], "no project 'nope'"),
    "retry": (["retry", "nope"], "no project 'nope'"),
    "purge": (["purge", "--yes", "--password", "wrong"], "wrong admin password"),
    "passwd": (
        ["passwd", "--password", "wrong", "--new-password", "long-enough"],
        "wrong admin password",
    ),
    "blender upload": (
        ["blender", "upload", "{tarball}", "--password", "wrong"],
        "wrong admin password",
    ),
    "blender status": (["blender", "status"], "no Blender uploaded"),
    "priority": (["priority", "nope", "60"], "no project 'nope'"),
    "pause": (["pause", "nope"], "no project 'nope'"),
    "resume": (["resume", "nope"], "no project 'nope'"),
    "cancel": (["cancel", "nope"], "no project 'nope'"),
    "requeue": (["requeue", "nope", "--frames", "1-2"], "no project 'nope'"),
    "nodes": (["nodes"], "0 node(s)"),
    "nodes disable": (["nodes", "disable", "n1", "--password", "wrong"], "wrong admin password"),
    "nodes enable": (["nodes", "enable", "n1", "--password", "wrong"], "wrong admin password"),
}


def _client_call(
    name: str, tmp_path: Path, before: str | None, after: str | None
) -> tuple[list[str], str]:
    args, answer = CLIENT_CALLS[name]
    (tmp_path / "p.zip").write_bytes(fake_project_zip())
    (tmp_path / "blender-4.2.0-linux-x64.tar.xz").write_bytes(b"not a tarball")
    args = [
        a.replace("{zip}", str(tmp_path / "p.zip")).replace(
            "{tarball}", str(tmp_path / "blender-4.2.0-linux-x64.tar.xz")
        )
        for a in args
    ]
    if after is not None:
        depth = 2 if args[0] == "blender" or args[:2] in (["nodes", d] for d in GROUPED) else 1
        args = [*args[:depth], "--server", after, *args[depth:]]
    if before is not None:
        args = ["--server", before, *args]
    return args, answer


GROUPED = ("disable", "enable")

# (--server before the command, --server after it, BLENDFARM_SERVER, which one is used)
PLACEMENTS = [
    pytest.param(None, "farm", None, "farm", id="after"),
    pytest.param("farm", None, None, "farm", id="before"),
    pytest.param(None, None, "farm", "farm", id="env"),
    pytest.param(None, UNREACHABLE, None, "unreachable", id="after-alone"),
    pytest.param(UNREACHABLE, "farm", None, "farm", id="after-beats-before"),
    pytest.param("farm", UNREACHABLE, None, "unreachable", id="after-beats-before-2"),
    pytest.param("farm", None, UNREACHABLE, "farm", id="before-beats-env"),
    pytest.param(UNREACHABLE, None, "farm", "unreachable", id="before-beats-env-2"),
    pytest.param(None, None, UNREACHABLE, "unreachable", id="env-alone"),
]


@pytest.mark.parametrize("command", list(CLIENT_CALLS))
@pytest.mark.parametrize(("before", "after", "env", "used"), PLACEMENTS)
def test_every_client_command_takes_server_before_or_after_its_name_or_from_the_env(
    runner: CliRunner,
    farm: InProcessFarm,
    tmp_path: Path,
    command: str,
    before: str | None,
    after: str | None,
    env: str | None,
    used: str,
) -> None:
    url = str(farm.client.base_url)  # the in-process farm answers at this URL only

    def real(value: str | None) -> str | None:
        return url if value == "farm" else value

    args, answer = _client_call(command, tmp_path, real(before), real(after))
    res = runner.invoke(app, args, obj=farm.client, env={"BLENDFARM_SERVER": real(env)})
    if used == "farm":
        assert answer in res.output, res.output
        assert "cannot reach" not in res.output
    else:
        assert res.exit_code == 1 and "cannot reach the server" in res.output, res.output
        assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "env", "value", "source"),
    [
        (["node", "--server", "http://after:1"], None, "http://after:1", "command line"),
        (["node", "-s", "http://after:1"], None, "http://after:1", "command line"),
        (["--server", "http://before:1", "node"], None, "http://before:1", "command line"),
        (
            ["--server", "http://before:1", "node", "--server", "http://after:1"],
            "http://env:1",
            "http://after:1",
            "command line",
        ),
        (
            ["--server", "http://before:1", "node"],
            "http://env:1",
            "http://before:1",
            "command line",
        ),
        (["node"], "http://env:1", "http://env:1", "env BLENDFARM_SERVER"),
        (["node"], None, "http://127.0.0.1:2254", "default"),
    ],
)
def test_node_takes_server_anywhere_and_says_where_it_came_from(
    runner: CliRunner,
    tmp_path: Path,
    args: list[str],
    env: str | None,
    value: str,
    source: str,
) -> None:
    res = runner.invoke(
        app,
        [*args, "--work-dir", str(tmp_path), "--print-config"],
        env={"BLENDFARM_SERVER": env, "COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if "│" in line}
    assert value in rows["server"] and source in rows["server"], rows["server"]


# -- every setting is an option ----------------------------------------------------------------

SAMPLES: dict[type, str] = {int: "7", float: "2.5", str: "given-on-the-line", Path: "{tmp}/given"}


@pytest.mark.parametrize(
    ("command", "item"),
    [("serve", item) for item in declared(Settings)]
    + [("node", item) for item in declared(NodeSettings)],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_every_setting_has_its_option_and_print_config_shows_it(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, item: Any
) -> None:
    monkeypatch.chdir(tmp_path)  # no blendfarm.toml of the developer's around
    flag = item.flags[0].split("/")[0]
    given = [flag] if item.type is bool else [flag, SAMPLES[item.type].format(tmp=tmp_path)]
    res = runner.invoke(app, [command, *given, "--print-config"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if "│" in line}
    assert "command line" in rows[item.name] and item.env in rows[item.name]
    if item.secret:
        assert "****" in rows[item.name] and given[-1] not in res.stdout
    elif item.type is not bool:
        assert given[-1] in rows[item.name]


def test_cold_turns_the_warm_setting_off(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["node", "--cold", "--work-dir", str(tmp_path), "--print-config"],
        env={"COLUMNS": "200"},
    )
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if "│" in line}
    assert "False" in rows["warm"] and "command line" in rows["warm"]


# -- help ----------------------------------------------------------------------------------------


def _all_commands() -> list[list[str]]:
    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return found


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p) or "blendfarm")
def test_help_shows_short_metavars_and_no_type_noise(runner: CliRunner, path: list[str]) -> None:
    res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert not re.search(r"<(bool|str|int|float|path|int range)>|\{\w+\}", res.stdout), res.stdout
    for line in res.stdout.splitlines():
        option = re.match(r"\s+((?:-\w, )?--[\w-]+(?: / --[\w-]+)?)(?: (\S+))?  ", line)
        if option and option.group(2):
            assert re.fullmatch(r"[A-Z][A-Z-]*", option.group(2)), line


def test_help_wraps_paragraphs_to_the_terminal(runner: CliRunner) -> None:
    res = runner.invoke(app, ["submit", "--help"], env={"COLUMNS": "100"})
    text = " ".join(res.stdout.split())
    assert "PATH is a .zip of the project folder, the folder itself (zipped on the way," in text
    paragraph = [ln for ln in res.stdout.splitlines() if "PATH is" in ln or "*.blend1" in ln]
    assert paragraph and all(len(line) <= 100 for line in res.stdout.splitlines())
    assert "Usage: blendfarm submit [OPTIONS] PATH" in res.stdout


# -- the command lines in the docs parse -----------------------------------------------------------

DOCUMENTED = re.compile(r"^(?:\.venv/bin/)?blendfarm(?:\s|$)")
# click's UsageError (unknown option, option without its value), wherever typer keeps click
USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def documented_command_lines(markdown: str) -> list[str]:
    """Command lines starting with `blendfarm` in code blocks and in `backticks` anywhere."""
    found: list[str] = []
    in_block = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            candidates = [re.sub(r"\s+#.*$", "", line)]
        else:
            candidates = re.findall(r"`([^`]+)`", line.replace("\\|", "|"))
        found += [c.strip() for c in candidates if DOCUMENTED.match(c.strip())]
    return found


def _expand(tokens: list[str]) -> list[list[str]]:
    """Usage notation to command lines: every [optional] part in, one line per a | b choice."""

    def sequence(i: int, stop: set[str]) -> tuple[list[list[str]], int]:
        lines: list[list[str]] = [[]]
        while i < len(tokens) and tokens[i] not in stop:
            if tokens[i] == "[":
                choices: list[list[str]] = []
                i += 1
                while True:
                    alternative, i = sequence(i, {"|", "]"})
                    choices += alternative
                    if i >= len(tokens) or tokens[i] == "]":
                        break
                    i += 1  # past "|"
                i += 1  # past "]"
                lines = [a + b for a in lines for b in choices]
            else:
                word = tokens[i].removesuffix("...")
                if word and word != "OPTIONS":
                    lines = [a + [word] for a in lines]
                i += 1
        return lines, i

    return sequence(0, set())[0]


def parse_documented(line: str) -> None:
    """Run one documented command line through the app's click parser (placeholders as is)."""
    # A quoted argument is one word, as the shell gives it: "mon-fri 09:00-18:00 off".
    words = re.findall(r'"[^"]*"|\'[^\']*\'|\[|\]|\||[^\s\[\]|]+', line)
    tokens = [w[1:-1] if w[:1] in "\"'" and len(w) > 1 else w for w in words]
    for argv in _expand(tokens):
        cmd: Any = typer.main.get_command(app)
        parent = None
        args = argv[1:]
        path = "blendfarm"
        while True:
            ctx = cmd.context_class(cmd, info_name=path, parent=parent)
            opts, rest, _order = cmd.make_parser(ctx).parse_args(list(args))
            if not hasattr(cmd, "commands"):
                break
            if not rest or rest[0] == "COMMAND":
                return
            sub = cmd.commands.get(rest[0])
            if sub is None:
                raise AssertionError(f"{line}: {path} has no command {rest[0]!r}")
            cmd, parent, args, path = sub, ctx, rest[1:], f"{path} {rest[0]}"
        if rest:
            raise AssertionError(f"{line}: {path} takes no {' '.join(rest)!r}")
        for param in cmd.get_params(ctx):
            if param.required and opts.get(param.name) is None:
                raise AssertionError(f"{line}: {path} needs {param.name}")


def broken_command_spans(markdown: str) -> list[str]:
    """`blendfarm ...` spans in the prose that a line break cuts in two (pasted line by line,
    the first half is a different, broken command)."""
    prose = re.sub(r"^\s*```.*?^\s*```", "", markdown, flags=re.S | re.M)
    spans = re.findall(r"`([^`]+)`", prose.replace("\\|", "|"))
    return [s for s in spans if "\n" in s and DOCUMENTED.match(s.strip())]


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md", "contrib/systemd/README.md"])
def test_no_documented_command_line_is_cut_by_a_line_break(doc: str) -> None:
    assert broken_command_spans((ROOT / doc).read_text()) == []
    assert broken_command_spans("say `blendfarm fetch ID\n  --raw` here") != []


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md"])
def test_every_command_line_in_the_docs_parses(doc: str) -> None:
    lines = documented_command_lines((ROOT / doc).read_text())
    assert len(lines) >= 10
    failures = []
    for line in lines:
        try:
            parse_documented(line)
        except (AssertionError, USAGE_ERROR) as exc:
            failures.append(f"{line}\n    {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "line",
    [
        "blendfarm node --server URL --token T --bogus",
        "blendfarm node --token",
        "blendfarm status --serverr URL",
        "blendfarm fetch",
        "blendfarm rm ID extra",
        "blendfarm nope",
        "blendfarm blender nope",
        "blendfarm submit PATH [--frame N | --framez A-B]",
        "blendfarm serve [--host 0.0.0.0] [--max-tilez N]",
    ],
)
def test_the_docs_check_refuses_what_does_not_parse(line: str) -> None:
    with pytest.raises((AssertionError, USAGE_ERROR)):
        parse_documented(line)


def test_the_docs_check_reads_code_blocks_tables_and_inline_code() -> None:
    markdown = (
        "Run `blendfarm status --watch` or `blendfarm.toml`.\n"
        "| `blendfarm submit PATH [--frame N \\| --frames A-B]` | upload |\n"
        "```sh\n.venv/bin/blendfarm fetch ID -o out/   # download\nls\n```\n"
    )
    assert documented_command_lines(markdown) == [
        "blendfarm status --watch",
        "blendfarm submit PATH [--frame N | --frames A-B]",
        ".venv/bin/blendfarm fetch ID -o out/",
    ]
    assert _expand(["blendfarm", "submit", "[", "--frame", "N", "|", "--frames", "A-B", "]"]) == [
        ["blendfarm", "submit", "--frame", "N"],
        ["blendfarm", "submit", "--frames", "A-B"],
    ]


# -- how the CLI is put together ---------------------------------------------------------------


def _module_level_imports(path: Path) -> set[str]:
    """Modules `path` imports when it is loaded (imports inside functions left out)."""
    import ast

    package = "blendfarm.cli"
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            if node.module is None:  # from . import x
                found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_the_cli_modules_import_no_server_code_and_form_no_cycle() -> None:
    folder = ROOT / "src" / "blendfarm" / "cli"
    graph = {
        f"blendfarm.cli.{p.stem}": _module_level_imports(p) for p in sorted(folder.glob("*.py"))
    }
    for module, imports in graph.items():
        assert not any(i.startswith("blendfarm.server") for i in imports), module
    seen: set[str] = set()

    def visit(module: str, stack: tuple[str, ...]) -> None:
        assert module not in stack, " -> ".join((*stack, module))
        if module in seen:
            return
        for dep in graph.get(module, set()) & set(graph):
            visit(dep, (*stack, module))
        seen.add(module)

    for module in graph:
        visit(module, ())
    assert "blendfarm.cli.main" not in set().union(
        *(imports for module, imports in graph.items() if module.endswith("_commands"))
    )


def test_rm_and_retry_use_the_key_this_shell_got_or_the_admin_password(
    runner: CliRunner, farm: InProcessFarm, tmp_path: Path, own_config_dir: Path
) -> None:
    archive = tmp_path / "p.zip"
    archive.write_bytes(fake_project_zip())
    res = run(runner, farm, "submit", str(archive), "--frame", "1", "--json")
    mine = json.loads(res.stdout)["id"]
    keys = own_config_dir / "blendfarm" / "owner-keys.json"
    assert mine in json.loads(keys.read_text()) and keys.stat().st_mode & 0o777 == 0o600
    theirs = farm.submit({"frame": "1"}).json()["id"]  # submitted from another machine
    res = run(runner, farm, "rm", theirs, "--yes")
    assert res.exit_code == 1 and "owner key" in res.output and "Traceback" not in res.output
    res = run(runner, farm, "retry", theirs)
    assert res.exit_code == 1 and "owner key" in res.output
    assert run(runner, farm, "rm", theirs, "--yes", "--password", "pw-456").exit_code == 0
    assert run(runner, farm, "rm", mine, "--yes").exit_code == 0
