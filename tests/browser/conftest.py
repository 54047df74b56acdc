"""Fixtures of the browser tests: a real farm, test projects made by Blender, Chromium.

The farm is `blendfarm serve --local-nodes 1` on free ports with known secrets; Chromium is
Debian's (`/usr/bin/chromium`), driven by Playwright (never Playwright's own browsers). A
missing Chromium or Blender skips these tests on a workstation and fails them in CI.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from blendfarm.archive import zip_folder

ROOT = Path(__file__).resolve().parents[2]
MAKE_SCENE = ROOT / "tests" / "make_scene.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "t0k"
PASSWORD = "secret-pw"
VIEWPORT = {"width": 1280, "height": 800}


def missing(what: str) -> None:
    """A missing tool fails the run in CI and skips it elsewhere."""
    (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{what} (required in CI)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("BLENDFARM_SCREENSHOTS", ROOT / "docs" / "img"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- test projects ---------------------------------------------------------------------------


def _blender() -> str:
    exe = os.environ.get("BLENDFARM_BLENDER") or shutil.which("blender")
    if not exe:
        missing("Blender is not installed (apt-get install blender)")
    return str(exe)


def _run_blender(blender: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [blender, "-b", "--factory-startup", "--python", str(MAKE_SCENE), "--", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_blender(proc: subprocess.Popen[bytes], what: str) -> None:
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"Blender could not make {what}:\n{out.decode(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Zipped project folders (scene.blend, lib/lib.blend, textures/checker.png).

    quick: 61x47, 4 samples (renders in a few seconds);
    slow:  201x151, 320 samples (a 2x2 chunk takes a second or two, long enough to watch);
    broken: no camera, so Blender cannot render it.
    """
    blender = _blender()
    root = tmp_path_factory.mktemp("scenes")
    lib = root / "lib.blend"
    _wait_blender(_run_blender(blender, "library", str(lib)), "the library")
    specs = {
        "quick": ["width=61", "height=47", "start=1", "end=2"],
        "slow": ["width=201", "height=151", "start=1", "end=2", "samples=320"],
        "broken": ["width=61", "height=47", "start=1", "end=1", "broken=1"],
    }
    procs = {}
    for name, opts in specs.items():
        folder = root / name
        (folder / "lib").mkdir(parents=True)
        shutil.copy(lib, folder / "lib" / "lib.blend")
        procs[name] = _run_blender(blender, "project", str(folder / "scene.blend"), *opts)
    zips = {}
    for name, proc in procs.items():
        _wait_blender(proc, f"the {name} project")
        zips[name] = zip_folder(root / name, root / f"{name}.zip")
    return zips


# -- the farm --------------------------------------------------------------------------------


@dataclass
class Farm:
    api: str
    ui: str
    data: Path
    log: Path
    token: str = TOKEN
    password: str = PASSWORD
    missing_routes: list[str] = field(default_factory=list)

    def url(self, route: str = "") -> str:
        """The dashboard on a hash route ("", "upload", ...); it finds the API by /config.js."""
        return f"{self.ui}/#/{route}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server, then kill whatever is left of its process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    # local nodes and their Blender run in the server's process group, which we created
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    _blender()
    exe = Path(sys.executable).with_name("blendfarm")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "blendfarm"]
    root = tmp_path_factory.mktemp("farm")
    api_port, ui_port = free_port(), free_port()
    while ui_port == api_port:
        ui_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLENDFARM_")}
    env.update(BLENDFARM_TOKEN=TOKEN, BLENDFARM_PASSWORD=PASSWORD)
    if os.environ.get("BLENDFARM_BLENDER"):
        env["BLENDFARM_BLENDER"] = os.environ["BLENDFARM_BLENDER"]
    log = root / "serve.log"
    args = [
        "serve",
        "--data",
        str(root / "data"),
        "--api-port",
        str(api_port),
        "--ui-port",
        str(ui_port),
        "--host",
        "127.0.0.1",
        "--local-nodes",
        "1",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd + args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    farm = Farm(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}", root / "data", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"blendfarm serve exited with {proc.returncode}:\n{farm.log_text()}")
            try:
                if httpx.get(f"{farm.api}/api/health", timeout=2).status_code == 200:
                    if httpx.get(farm.ui + "/", timeout=2).status_code == 200:
                        break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"blendfarm serve did not answer /api/health:\n{farm.log_text()}")
            time.sleep(0.2)
        # the local node must register before anything can render
        deadline = time.monotonic() + 45
        while not [n for n in httpx.get(f"{farm.api}/api/nodes", timeout=5).json() if n["online"]]:
            if time.monotonic() > deadline:
                pytest.fail(f"--local-nodes 1 started no node within 45 s:\n{farm.log_text()}")
            time.sleep(0.3)
        # docs/api.md routes the dashboard calls on its own; a server without one is reported
        for route in ("/api/blender",):
            if httpx.get(farm.api + route, timeout=5).status_code in (404, 405):
                farm.missing_routes.append(route)
                warnings.warn(f"the server does not implement {route} (docs/api.md)", stacklevel=1)
        yield farm
    finally:
        _stop(proc)


# -- a stranger's server --------------------------------------------------------------------


@dataclass
class Recorder:
    """Another server on this machine that notes every request it gets (and says yes to all)."""

    url: str
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            seen.append(f"{self.command} {self.path} {dict(self.headers)}")
            body = b'{"lines": ["from the recorder"], "available": false, "nodes": {}}'
            self.send_response(200)
            # answers a browser would accept from anywhere, so only the dashboard's own choice
            # of server keeps it away from here
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Headers", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Recorder(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Console:
    """Errors the page logged; expected ones (e.g. a 403 we provoke) can be allowed."""

    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(pattern)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.allowed)]

    def assert_clean(self) -> None:
        bad = self.unexpected()
        assert not bad, "errors in the browser console:\n" + "\n".join(bad)


@dataclass
class Ui:
    page: object
    farm: Farm
    console: Console

    def goto(self, route: str = "") -> None:
        self.page.goto(self.farm.url(route))
        self.page.locator("#conn[data-state='live']").wait_for()

    def screenshot(self, name: str) -> None:
        """A 1280x800 picture of the page for the docs, without notices or hover effects."""
        self.page.evaluate(
            "document.getElementById('toasts').replaceChildren(); document.activeElement?.blur()"
        )
        self.page.mouse.move(0, 0)
        self.page.screenshot(path=str(screenshot_dir() / name))


@pytest.fixture
def ui(browser, farm: Farm) -> Iterator[Ui]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(20_000)
    console = Console()

    def on_console(msg) -> None:
        if msg.type == "error":
            url = (msg.location or {}).get("url", "")
            console.errors.append(f"{msg.text} [{url}]")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    for route in farm.missing_routes:
        console.allow(rf"status of 40[45] .*\[.*{re.escape(route)}\]")
    try:
        yield Ui(page, farm, console)
    finally:
        context.close()
