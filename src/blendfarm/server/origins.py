"""Who may talk to the API from a browser: the names this server answers to, and a guard.

A page on another site must not drive the farm through a visitor's browser. So:
- a request whose `Host` is not one of this server's names or addresses is refused (this is
  what stops DNS rebinding: the attacker's name resolves to us, but the Host stays theirs);
- CORS is granted only to the dashboard: its port on those same names, plus `ui_origin`;
- a state-changing request (POST, PUT, DELETE, PATCH) that carries an `Origin` other than
  those is refused with 403, even when the browser would not read the answer (a plain form
  POST from another site is such a request). The CLI and nodes send no Origin.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from collections.abc import Iterable
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from .. import protocol as p

WILDCARDS = {"0.0.0.0", "::", ""}
LOOPBACK = {"localhost", "127.0.0.1", "::1"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SIOCGIFADDR = 0x8915


def _ipv4_of(interface: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            request = struct.pack("256s", interface[:15].encode())
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, request)
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def local_addresses() -> set[str]:
    """Every address of this machine's network interfaces (Linux), IPv4 and IPv6."""
    found: set[str] = set()
    try:
        interfaces = [name for _index, name in socket.if_nameindex()]
    except OSError:
        interfaces = []
    for name in interfaces:
        addr = _ipv4_of(name)
        if addr:
            found.add(addr)
    inet6 = Path("/proc/net/if_inet6")
    if inet6.exists():
        for line in inet6.read_text().splitlines():
            raw = line.split()[0] if line.split() else ""
            if len(raw) == 32:
                found.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]).split("%")[0])
    except OSError:
        pass
    return found


def server_names(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Lower-case names and addresses this server answers to when bound to `host`."""
    names = set(LOOPBACK)
    if host in WILDCARDS:
        hostname = socket.gethostname()
        names |= {hostname, f"{hostname}.local", socket.getfqdn()}
        names |= local_addresses()
    else:
        names.add(host)
    names |= {n.strip() for n in extra if n.strip()}
    return frozenset(n.lower().strip("[]") for n in names)


def origins_on(names: Iterable[str], port: int, extra: str = "") -> list[str]:
    """The origins of a port on each name, http and https; plus `extra` (an origin)."""
    origins = []
    for name in sorted(names):
        shown = f"[{name}]" if ":" in name else name
        for scheme in ("http", "https"):
            origins.append(f"{scheme}://{shown}:{port}")
    if extra:
        origins.append(extra.rstrip("/"))
    return origins


def host_name(header: str) -> str:
    """The name part of a Host header: 'a.b:80' → 'a.b', '[::1]:80' → '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostAndOrigin:
    """ASGI middleware: refuse foreign Host headers, and foreign Origins on changes."""

    def __init__(self, app: ASGIApp, names: frozenset[str], origins: Iterable[str]):
        self.app = app
        self.names = names
        self.origins = {o.lower() for o in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        name = host_name(headers.get("host", ""))
        if name not in self.names:
            await _refuse(send, 400, "bad_host", f"this server does not answer to {name!r}")
            return
        origin = headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin and not self.same_site(origin):
            await _refuse(
                send, 403, "forbidden", "requests from another site may not change the farm"
            )
            return
        await self.app(scope, receive, send)

    def same_site(self, origin: str) -> bool:
        return origin.lower().rstrip("/") in self.origins


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = p.encode(p.ErrorBody(error=p.ErrorDetail(code=code, message=message, status=status)))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
