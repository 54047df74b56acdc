"""Settings: one declaration per setting; values from the command line, env, file, default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from blendfarm.errors import BadInput
from blendfarm.parsing import FALSE_WORDS, TRUE_WORDS
from blendfarm.server.validate import parse_submission
from blendfarm.settings import NodeSettings, Settings, declared


@pytest.fixture(autouse=True)
def _no_config_file_of_the_developer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ./blendfarm-data and ./blendfarm-work are relative


@pytest.mark.parametrize("cls", [Settings, NodeSettings])
def test_building_from_nothing_gives_the_declared_defaults(cls: type) -> None:
    built = cls.build({}, env={})
    assert built == cls()
    assert set(built.sources.values()) == {"default"}
    assert {item.name for item in declared(cls)} == {
        f.name for f in dataclasses.fields(cls) if f.name != "sources"
    }


def test_the_command_line_beats_the_env_which_beats_the_file_which_beats_the_default(
    tmp_path: Path,
) -> None:
    (tmp_path / "blendfarm.toml").write_text("api-port = 3001\nui_port = 3002\nmax_tiles = 9\n")
    built = Settings.build(
        {"data": str(tmp_path), "api_port": 3000, "host": None},
        env={"BLENDFARM_UI_PORT": "4002", "BLENDFARM_API_PORT": "4001"},
    )
    assert (built.api_port, built.ui_port, built.max_tiles, built.host) == (
        3000,
        4002,
        9,
        "0.0.0.0",
    )
    assert built.sources["api_port"] == "command line"
    assert built.sources["ui_port"] == "env BLENDFARM_UI_PORT"
    assert built.sources["max_tiles"] == str(tmp_path / "blendfarm.toml")
    assert built.sources["host"] == "default"
    assert built.data == tmp_path


def test_the_config_file_is_found_in_the_dir_the_env_names(tmp_path: Path) -> None:
    (tmp_path / "blendfarm.toml").write_text('name = "from-file"\nwarm = false\n')
    built = NodeSettings.build({}, env={"BLENDFARM_WORK_DIR": str(tmp_path)})
    assert built.work_dir == tmp_path and built.name == "from-file" and built.warm is False


def test_values_from_the_environment_are_checked() -> None:
    assert Settings.build({}, env={"BLENDFARM_API_PORT": "3000"}).api_port == 3000
    assert NodeSettings.build({}, env={"BLENDFARM_WARM": "no"}).warm is False
    assert NodeSettings.build({}, env={"BLENDFARM_NODE_NAME": "n7"}).name == "n7"
    with pytest.raises(BadInput, match="BLENDFARM_API_PORT"):
        Settings.build({}, env={"BLENDFARM_API_PORT": "lots"})
    with pytest.raises(BadInput, match="BLENDFARM_WARM.*true or false"):
        NodeSettings.build({}, env={"BLENDFARM_WARM": "maybe"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'\n", "unknown setting 'colour'"),
        ("max_tiles = [\n", "not valid TOML"),
        ("max_tiles = 'many'\n", "max_tiles from"),
        ("max_tiles = true\n", "max_tiles from"),
    ],
)
def test_a_bad_config_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "blendfarm.toml").write_text(text)
    with pytest.raises(BadInput, match=message):
        Settings.build({"data": str(tmp_path)}, env={})


def test_secrets_are_masked_for_display() -> None:
    items = {item.name: item for item in declared(Settings)}
    assert items["token"].secret and items["password"].secret
    assert items["token"].shown("s3cret") == "****"
    assert items["token"].shown("") == ""
    assert items["api_port"].shown(2254) == "2254"


@pytest.mark.parametrize("word", sorted((TRUE_WORDS | FALSE_WORDS) - {""}) + ["YES", " Off "])
def test_the_server_and_the_settings_read_yes_and_no_alike(word: str) -> None:
    form = {"frame_start": "1", "frame_end": "1", "animation": word}
    server_reads = parse_submission(form, max_tiles=8).animation
    settings_read = NodeSettings.build({}, env={"BLENDFARM_WARM": word}).warm
    assert server_reads == settings_read == (word.strip().lower() in TRUE_WORDS)
