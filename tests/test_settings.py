"""The knob tables and the settings dataclasses must agree (defaults live in both)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from blendfarm.errors import BadInput
from blendfarm.settings import NODE_KNOBS, SERVER_KNOBS, Knob, NodeSettings, Settings


@pytest.mark.parametrize(("cls", "knobs"), [(Settings, SERVER_KNOBS), (NodeSettings, NODE_KNOBS)])
def test_every_knob_is_a_field_with_the_same_default(cls: type, knobs: tuple[Knob, ...]) -> None:
    fields = {f.name: f.default for f in dataclasses.fields(cls) if f.name != "sources"}
    assert set(fields) == {k.name for k in knobs}
    for knob in knobs:
        default = Path(knob.default) if isinstance(fields[knob.name], Path) else knob.default
        assert fields[knob.name] == default, knob.name
        assert knob.env.startswith("BLENDFARM_") and knob.help


def test_values_from_the_environment_are_checked() -> None:
    assert Settings.build({}, env={"BLENDFARM_API_PORT": "3000"}).api_port == 3000
    assert NodeSettings.build({}, env={"BLENDFARM_WARM": "no"}).warm is False
    with pytest.raises(BadInput, match="BLENDFARM_API_PORT"):
        Settings.build({}, env={"BLENDFARM_API_PORT": "lots"})
