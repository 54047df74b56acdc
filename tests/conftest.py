from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from apphelpers import InProcessFarm
from helpers import FarmProcesses, make_project, require_blender, zip_folder

# Shared 2-core machines (CI, developers running several suites) make timings erratic:
# property tests are judged on their results, never on how long an example took.
settings.register_profile("blendfarm", deadline=None)
settings.load_profile("blendfarm")

# A suite started in the background by a shell without job control inherits Ctrl-C ignored
# (POSIX shells do that to background jobs) and would hand that on to every process it
# starts; tests that press Ctrl-C on a `blendfarm` command (SIGINT) would then wait forever.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def own_config_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Owner keys the CLI remembers go to a folder of the test's own, never the user's."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    return folder


@pytest.fixture(scope="session")
def blender() -> str:
    return require_blender()


@pytest.fixture(scope="session")
def project_dir(blender: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with a texture in a subfolder and a linked library (203x157, 4 frames)."""
    folder = tmp_path_factory.mktemp("project")
    make_project(blender, folder)
    return folder


@pytest.fixture(scope="session")
def project_zip(project_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zip_folder(project_dir, tmp_path_factory.mktemp("zip") / "project.zip")


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[InProcessFarm]:
    """The real app and store in this process; tests play the nodes (no Blender)."""
    f = InProcessFarm(tmp_path)
    yield f
    f.client.close()
    f.farm.close()


@pytest.fixture
def live_farm(tmp_path: Path) -> Iterator[FarmProcesses]:
    """A real `blendfarm serve` on free loopback ports; nodes are started by the test."""
    f = FarmProcesses(tmp_path)
    f.start_server()
    try:
        yield f
    finally:
        f.close()
