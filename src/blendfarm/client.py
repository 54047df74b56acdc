"""The one client of the API, used by the node and by every CLI command.

Typed methods send and receive the messages of `protocol`. Everything about talking to a
server lives here once: the token and password headers, the one error shape (an answer of
4xx/5xx becomes the `BlendfarmError` of its status, with the server's sentence), what an
unreachable server looks like, and, for callers that never give up (the node), retries with
backoff and jitter until a stop is asked for.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import httpx

from . import protocol as p
from .errors import BlendfarmError, Unreachable, from_status
from .protocol import OWNER_HEADER, PASSWORD_HEADER

T = TypeVar("T")
Progress = Callable[[int], None]
DEFAULT_SERVER = "http://127.0.0.1:2254"
BLOCK = 1024 * 1024


class Stopped(Exception):
    """A retrying call gave up because its caller asked to stop."""


@dataclass(frozen=True)
class Retry:
    """How a retrying client waits: backoff from `first` to `most` seconds, with jitter.

    `wait(seconds)` sleeps and returns True when the caller wants to stop (for the node, its
    stop event's `wait`); `say` is told why a call is being retried.
    """

    wait: Callable[[float], bool]
    say: Callable[[str], None] = lambda _msg: None
    first: float = 0.5
    most: float = 15.0


@dataclass(frozen=True)
class FollowUp:
    """A node asking for its next task with a result: its name, the slot ("cpu" or "gpu")
    and the content that slot's Blender has loaded (preferred)."""

    node: str
    slot: str
    warm: str = ""


def error_of(resp: httpx.Response) -> BlendfarmError:
    """The server's JSON error as an exception (its sentence, or the HTTP status)."""
    try:
        body = p.decode(resp.content, p.ErrorBody).error
        return from_status(body.status, body.code, body.message)
    except BlendfarmError:
        return from_status(
            resp.status_code, "http_error", f"the server answered HTTP {resp.status_code}"
        )


class ApiClient:
    """A blendfarm server's API, typed. `retry` makes every call wait out an absent server."""

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        token: str = "",
        password: str = "",
        retry: Retry | None = None,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
    ):
        self.server = server.rstrip("/")
        self.retry = retry
        self.password = password
        self.http = http or httpx.Client(
            base_url=self.server, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        return Unreachable(
            f"cannot reach the server at {self.server}: {exc or type(exc).__name__} "
            "(is `blendfarm serve` running? --server / BLENDFARM_SERVER)"
        )

    def _send(self, method: str, url: str, *, retry: bool = True, **kw: Any) -> httpx.Response:
        """One request; with a retry policy, transport errors and 5xx (but 507) are retried."""
        policy = self.retry if retry else None
        wait = policy.first if policy else 0.0
        while True:
            try:
                resp = self.http.request(method, url, **kw)
            except httpx.TransportError as exc:
                if policy is None:
                    raise self._unreachable(exc) from None
                policy.say(f"server unreachable ({type(exc).__name__}); retrying in {wait:.0f} s")
            else:
                # 507 (server disk full) answers this request; it is not a server that is away.
                if policy is None or resp.status_code < 500 or resp.status_code == 507:
                    return resp
            assert policy is not None
            if policy.wait(wait * random.uniform(0.5, 1.5)):
                raise Stopped()
            wait = min(wait * 2, policy.most)

    def _call(self, method: str, url: str, kind: type[T], **kw: Any) -> T:
        resp = self._send(method, url, **kw)
        if resp.status_code >= 400:
            raise error_of(resp)
        return p.decode(resp.content, kind, "the server's answer")

    def _admin(self, password: str | None) -> dict[str, str]:
        return {PASSWORD_HEADER: password if password is not None else self.password}

    # -- people -----------------------------------------------------------------------------

    def health(self) -> p.Health:
        return self._call("GET", "/api/health", p.Health)

    def status(self) -> p.Status:
        return self._call("GET", "/api/status", p.Status)

    def projects(self) -> list[p.Project]:
        return self._call("GET", "/api/projects", list[p.Project])

    def project(self, pid: str) -> p.Project:
        return self._call("GET", f"/api/projects/{_seg(pid)}", p.Project)

    def submit(
        self, upload: Path, fields: dict[str, str], progress: Progress | None = None
    ) -> p.Project:
        """Upload a zip or .blend with the submission's form fields."""
        with open(upload, "rb") as fh:
            reader = _Reading(fh, progress)
            return self._call(
                "POST",
                "/api/projects",
                p.Project,
                data=fields,
                files={"file": (upload.name, reader, "application/octet-stream")},
                timeout=httpx.Timeout(None, connect=5),
            )

    def delete(self, pid: str, owner_key: str | None = None) -> p.Deleted:
        headers = self._owner(owner_key)
        return self._call("DELETE", f"/api/projects/{_seg(pid)}", p.Deleted, headers=headers)

    def retry_project(self, pid: str, owner_key: str | None = None) -> p.Project:
        headers = self._owner(owner_key)
        return self._call("POST", f"/api/projects/{_seg(pid)}/retry", p.Project, headers=headers)

    def control(self, pid: str, action: str, owner_key: str | None = None) -> p.Project:
        """Pause, resume or cancel a project (`action`); owner key or admin password."""
        if action not in ("pause", "resume", "cancel"):
            raise ValueError(f"no project action {action!r}")
        url, headers = f"/api/projects/{_seg(pid)}/{action}", self._owner(owner_key)
        return self._call("POST", url, p.Project, headers=headers)

    def set_priority(self, pid: str, priority: int, owner_key: str | None = None) -> p.Project:
        body, url = p.PriorityChange(priority=priority), f"/api/projects/{_seg(pid)}/priority"
        return self._json("POST", url, body, p.Project, headers=self._owner(owner_key))

    def requeue(self, pid: str, ask: p.RequeueRequest, owner_key: str | None = None) -> p.Requeued:
        url = f"/api/projects/{_seg(pid)}/requeue"
        return self._json("POST", url, ask, p.Requeued, headers=self._owner(owner_key))

    def set_node_disabled(self, name: str, disabled: bool, password: str | None = None) -> p.Node:
        url = f"/api/nodes/{_seg(name)}/{'disable' if disabled else 'enable'}"
        return self._call("POST", url, p.Node, headers=self._admin(password))

    def _owner(self, owner_key: str | None) -> dict[str, str]:
        """The owner key of a project, and the admin password when the client has one."""
        headers = {OWNER_HEADER: owner_key} if owner_key else {}
        if self.password:
            headers[PASSWORD_HEADER] = self.password
        return headers

    def download(
        self,
        url: str,
        out_dir: Path,
        fallback: str,
        progress: Callable[[str, int | None], Progress] | None = None,
    ) -> Path:
        """Stream a file into `out_dir` under the server's file name; returns its path.

        `progress(name, total)` may return a function told of every block's size.
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            with self.http.stream("GET", url, timeout=httpx.Timeout(None, connect=5)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_of(resp)
                disposition = resp.headers.get("content-disposition", "")
                m = re.search(r'filename="?([^";]+)"?', disposition)
                name = Path(m.group(1)).name if m else fallback
                dest = out_dir / name
                part = dest.with_name(f".{dest.name}.part")
                total = int(resp.headers.get("content-length", 0)) or None
                advance = progress(name, total) if progress else None
                try:
                    with open(part, "wb") as fh:
                        for block in resp.iter_bytes(BLOCK):
                            fh.write(block)
                            if advance:
                                advance(len(block))
                    part.replace(dest)
                finally:
                    part.unlink(missing_ok=True)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        return dest

    def events(self) -> Iterator[p.Status]:
        """Status snapshots from the server's event stream, as they come."""
        try:
            with self.http.stream(
                "GET", "/api/events", timeout=httpx.Timeout(None, connect=5)
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise error_of(resp)
                data: list[str] = []
                for line in resp.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif not line and data:
                        yield p.decode("\n".join(data), p.Status, "the event stream")
                        data = []
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def nodes(self) -> list[p.Node]:
        return self._call("GET", "/api/nodes", list[p.Node])

    def node_log(self, name: str) -> p.Lines:
        return self._call("GET", f"/api/nodes/{_seg(name)}/log", p.Lines)

    # -- admin ------------------------------------------------------------------------------

    def server_log(self, password: str | None = None) -> p.Lines:
        return self._call("GET", "/api/logs", p.Lines, headers=self._admin(password))

    def purge(self, password: str | None = None) -> p.Purged:
        return self._call("POST", "/api/purge", p.Purged, headers=self._admin(password))

    def change_password(self, new: str, password: str | None = None) -> p.Ok:
        body = p.encode(p.NewPassword(password=new))
        headers = {**self._admin(password), "Content-Type": "application/json"}
        return self._call("POST", "/api/password", p.Ok, content=body, headers=headers)

    def blender_status(self) -> p.BlenderStatus:
        return self._call("GET", "/api/blender", p.BlenderStatus)

    def upload_blender(
        self, tarball: Path, password: str | None = None, progress: Progress | None = None
    ) -> p.BlenderStatus:
        size = tarball.stat().st_size
        with open(tarball, "rb") as fh:
            return self._call(
                "PUT",
                "/api/blender",
                p.BlenderStatus,
                params={"filename": tarball.name},
                headers={**self._admin(password), "Content-Length": str(size)},
                content=_blocks(fh, progress),
                timeout=httpx.Timeout(None, connect=5),
            )

    # -- nodes ------------------------------------------------------------------------------

    def register(self, name: str, info: p.NodeInfo) -> p.Welcome:
        return self._json("POST", f"/api/nodes/{_seg(name)}/register", info, p.Welcome)

    def heartbeat(self, name: str, beat: p.Heartbeat, retry: bool = False) -> p.HeartbeatAnswer:
        return self._json(
            "POST", f"/api/nodes/{_seg(name)}/heartbeat", beat, p.HeartbeatAnswer, retry=retry
        )

    def lease(
        self, name: str, slot: str = "cpu", wait: float = 0.0, warm: str = ""
    ) -> p.Task | None:
        """The next task for the node's `slot` ("gpu" or "cpu"), or None when there is none;
        with `wait` the server holds the answer up to that many seconds until work exists;
        `warm`: the content_sha the slot's Blender has loaded (preferred)."""
        params = {"slot": slot, **({"wait": f"{wait:g}"} if wait else {})}
        params.update({"warm": warm} if warm else {})
        resp = self._send(
            "POST",
            f"/api/nodes/{_seg(name)}/lease",
            params=params,
            timeout=httpx.Timeout(wait + 60.0, connect=10.0),
        )
        if resp.status_code == 204:
            return None
        if resp.status_code >= 400:
            raise error_of(resp)
        return p.decode(resp.content, p.Task, "the server's task")

    def stops(self, name: str, wait: float) -> list[int]:
        """Tasks the node must stop now; the server holds the answer up to `wait` seconds."""
        timeout = httpx.Timeout(wait + 60.0, connect=10.0)
        path = f"/api/nodes/{_seg(name)}/stops"
        params = {"wait": f"{wait:g}"}
        return self._call("GET", path, p.Stops, params=params, timeout=timeout).cancel

    def leave(self, name: str) -> None:
        """Say goodbye; best effort, never retried."""
        try:
            self.http.post(f"/api/nodes/{_seg(name)}/leave", timeout=5)
        except httpx.HTTPError:
            pass

    def send_result(
        self, task: p.Task, data: bytes, kind: str = "png", follow: FollowUp | None = None
    ) -> p.Accepted:
        """A task's result: a chunk's image (`kind` png, or exr and raw: OpenEXR) or a
        finished frame (kind final). With `follow`, the answer's `next` is that node's next
        task (None when nothing is queued for it): no lease request of its own."""
        params = {"lease": task.lease, "kind": kind}
        if follow is not None:
            params.update(next=follow.slot, node=follow.node)
            params.update({"warm": follow.warm} if follow.warm else {})
        return self._call(
            "PUT", f"/api/tasks/{task.id}/result", p.Accepted, params=params, content=data
        )

    def send_probe(self, task: p.Task, probe: p.Probe) -> p.Accepted:
        return self._json(
            "POST", f"/api/tasks/{task.id}/probe", probe, p.Accepted, params={"lease": task.lease}
        )

    def fail(self, task: p.Task, failure: p.Failure) -> p.FailureAnswer:
        return self._json(
            "POST",
            f"/api/tasks/{task.id}/fail",
            failure,
            p.FailureAnswer,
            params={"lease": task.lease},
        )

    def release(self, task: p.Task) -> None:
        """Hand a task back unfinished; best effort (the lease runs out on its own)."""
        try:
            self.http.post(f"/api/tasks/{task.id}/release", params={"lease": task.lease}, timeout=5)
        except httpx.HTTPError:
            pass

    def fetch_verified(
        self, url: str, dest: Path, sha256: str, what: str, progress: Progress | None = None
    ) -> None:
        """Stream `url` to `dest`; BlendfarmError (and no file) unless it hashes to `sha256`.

        `progress` is told the bytes written so far.
        """
        digest = hashlib.sha256()
        try:
            with self.http.stream("GET", url) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise BlendfarmError(f"cannot download {what}: {error_of(resp)}")
                with open(dest, "wb") as fh:
                    for block in resp.iter_bytes(BLOCK):
                        digest.update(block)
                        fh.write(block)
                        if progress:
                            progress(fh.tell())
            if digest.hexdigest() != sha256:
                raise BlendfarmError(f"{what} arrived damaged (sha256 mismatch)")
        except httpx.TransportError as exc:
            dest.unlink(missing_ok=True)
            raise BlendfarmError(f"cannot download {what}: {exc}") from None
        except BaseException:
            dest.unlink(missing_ok=True)
            raise

    def _json(self, method: str, url: str, body: Any, kind: type[T], **kw: Any) -> T:
        headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
        return self._call(method, url, kind, content=p.encode(body), headers=headers, **kw)


def _seg(value: str) -> str:
    """A path segment, refused when it could change the path."""
    if not value or "/" in value or value in {".", ".."} or "?" in value or "#" in value:
        raise BlendfarmError(f"{value!r} is not a valid id or name", status=400, code="bad_input")
    return value


class _Reading:
    """A file that tells a progress function how much httpx has read from it."""

    def __init__(self, fh: BinaryIO, progress: Progress | None):
        self.fh, self.progress = fh, progress

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        if self.progress:
            self.progress(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        return _blocks(self.fh, self.progress)

    def fileno(self) -> int:
        return self.fh.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()


def _blocks(fh: BinaryIO, progress: Progress | None) -> Iterator[bytes]:
    while block := fh.read(BLOCK):
        if progress:
            progress(len(block))
        yield block


def status_json(message: object) -> str:
    """JSON of a message (or a list of them), for `--json` output."""
    return json.dumps(p.to_builtins(message))
