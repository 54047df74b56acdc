"""The systemd units in contrib/systemd: a structural check everywhere, and
`systemd-analyze verify` where it is installed.

`verify` insists that ExecStart's binary exists, which /usr/local/bin/blendfarm does not on a
build machine, so it checks copies whose ExecStart runs /bin/true with the same arguments.
It reports unknown keys and bad values as warnings with exit code 0, so any output fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import missing

UNITS = Path(__file__).resolve().parent.parent / "contrib" / "systemd"
BINARY = "/usr/local/bin/blendfarm"
COMMANDS = {
    "blendfarm-server.service": f"{BINARY} serve --data /var/lib/blendfarm/server",
    "blendfarm-node.service": f"{BINARY} node --work-dir /var/lib/blendfarm/node",
}
ENV_FILES = {
    "blendfarm-server.service": "-/etc/default/blendfarm-server",
    "blendfarm-node.service": "-/etc/default/blendfarm-node",
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values, as systemd reads them (repeated keys accumulate)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {number}: keep each setting on one line"
        if match := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            assert match[1] not in sections, f"line {number}: section [{match[1]}] twice"
            current = sections[match[1]] = {}
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"line {number}: not 'Key=value': {raw!r}"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key.strip()), f"line {number}: bad key"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}= should appear once, found {values}"
    return values[0]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unit_structure(name: str):
    unit = parse_unit((UNITS / name).read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit["Unit"], "Description")
    assert "network-online.target" in one(unit["Unit"], "After").split()
    assert "network-online.target" in one(unit["Unit"], "Wants").split()

    service = unit["Service"]
    assert one(service, "ExecStart") == COMMANDS[name]
    assert one(service, "EnvironmentFile") == ENV_FILES[name]
    expected = {
        "Restart": "on-failure",
        "RestartSec": "5",
        "User": "blendfarm",
        "Group": "blendfarm",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "30",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ReadWritePaths": "/var/lib/blendfarm",
    }
    assert {key: one(service, key) for key in expected} == expected
    # The data/work dir sits in a state directory systemd creates for the user.
    work_dir = COMMANDS[name].split()[-1].removeprefix("/var/lib/")
    assert one(service, "StateDirectory").split() == ["blendfarm", work_dir]

    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def test_parser_rejects_what_systemd_would():
    with pytest.raises(AssertionError):
        parse_unit("Description=outside any section\n")
    with pytest.raises(AssertionError):
        parse_unit("[Service]\nnot a setting\n")


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        missing("systemd-analyze is not installed (the structural test still ran)")
    assert found is not None
    return found


def verify(tool: str, *units: Path) -> str:
    proc = subprocess.run(
        [tool, "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return f"exit code {proc.returncode}\n{proc.stdout}{proc.stderr}".strip()


def runnable_copy(name: str, text: str, dest: Path) -> Path:
    assert f"ExecStart={BINARY} " in text
    copy = dest / name
    copy.write_text(text.replace(f"ExecStart={BINARY} ", "ExecStart=/bin/true "))
    return copy


def test_systemd_analyze_verify(tmp_path: Path):
    tool = systemd_analyze()
    copies = [runnable_copy(n, (UNITS / n).read_text(), tmp_path) for n in sorted(COMMANDS)]
    assert verify(tool, *copies) == "exit code 0"


def test_systemd_analyze_catches_mistakes(tmp_path: Path):
    """The check above would notice a typo: verify complains about a broken copy."""
    tool = systemd_analyze()
    name = "blendfarm-node.service"
    text = (UNITS / name).read_text().replace("Restart=on-failure", "Restart=sometimes")
    out = verify(tool, runnable_copy(name, text + "\n[Service]\nBogusKey=1\n", tmp_path))
    assert "sometimes" in out and "BogusKey" in out
