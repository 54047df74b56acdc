"""Transfer speed of a real `blendfarm serve`: a 1 GiB project up, and down again.

    .venv/bin/python bench/transfer.py [--size-mib 1024] [--rounds 2]

Makes a project zip of `--size-mib` MiB (a fake scene.blend and one stored member of
incompressible bytes) in a temporary dir, starts the server on free loopback ports, then
per round:

* upload: `POST /api/projects` as multipart/form-data, the file sent with `sendfile` from a
  bare socket (the client costs next to nothing), timed from the first byte sent to the
  server's answer, which comes once the zip was checked whole, hashed and adopted; the time
  between the last byte sent and the answer is reported too;
* download: `GET /api/projects/{id}/archive` (the node's download of the same zip), read
  into one reused buffer and thrown away.

The server's memory is read from /proc/PID/status (VmRSS before, VmHWM: its peak) and
its CPU from /proc/PID/stat. Writes bench/results/transfer.json; exits 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, TOKEN, Server, loadavg  # noqa: E402

TARGET_MB_S = 200.0
TARGET_GROWTH_MIB = 64.0
BOUNDARY = "blendfarm-transfer-bench-boundary"
console = Console()


def make_zip(path: Path, size: int) -> None:
    """A project zip of about `size` bytes: a fake .blend and incompressible data, stored."""
    block = os.urandom(1024**2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr("scene.blend", b"BLENDER-v304" + bytes(256))
        with zf.open("textures/big.bin", "w", force_zip64=True) as member:
            written = 0
            while written < size:
                piece = block[: min(len(block), size - written)]
                member.write(piece)
                written += len(piece)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of an HTTP/1.1 answer with Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("the server closed the connection")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return status, body


def upload(port: int, path: Path) -> dict[str, Any]:
    fields = {"title": "transfer", "frame": "1"}
    preamble = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    preamble += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    )
    epilogue = f"\r\n--{BOUNDARY}--\r\n".encode()
    size = path.stat().st_size
    length = len(preamble.encode()) + size + len(epilogue)
    head = (
        f"POST /api/projects HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port)) as sock, open(path, "rb") as fh:
        started = time.perf_counter()
        sock.sendall(head.encode() + preamble.encode())
        sock.sendfile(fh)
        sock.sendall(epilogue)
        sent = time.perf_counter()
        status, body = read_answer(sock)
        done = time.perf_counter()
    if status != 201:
        raise RuntimeError(f"upload: HTTP {status}: {body[:300]!r}")
    return {
        "bytes": length,
        "seconds": round(done - started, 3),
        "send_seconds": round(sent - started, 3),
        "answer_after_last_byte_s": round(done - sent, 3),
        "mb_s": round(length / (done - started) / 1e6, 1),
        "project": json.loads(body)["id"],
    }


def download(port: int, pid: str) -> dict[str, Any]:
    request = (
        f"GET /api/projects/{pid}/archive HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    buf = bytearray(1024**2)
    view = memoryview(buf)
    total = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024**2)
        started = time.perf_counter()
        sock.sendall(request.encode())
        first = sock.recv(65536)
        head, _, rest = first.partition(b"\r\n\r\n")
        status = int(head.split()[1])
        total = len(rest)
        while n := sock.recv_into(view):
            total += n
        done = time.perf_counter()
    if status != 200:
        raise RuntimeError(f"download: HTTP {status}")
    return {
        "bytes": total,
        "seconds": round(done - started, 3),
        "mb_s": round(total / (done - started) / 1e6, 1),
    }


def cpu_seconds(server: Server) -> float:
    return server.cpu_seconds() or 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "transfer.json")
    args = parser.parse_args()
    rounds: list[dict[str, Any]] = []
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="blendfarm-transfer-") as tmp:
        zpath = Path(tmp) / "big.zip"
        console.print(f"making a {args.size_mib} MiB project zip")
        make_zip(zpath, args.size_mib * 1024**2)
        server = Server(
            Path(tmp) / "data",
            Path(tmp) / "server.log",
            extra=["--max-upload", str(4 * 1024**3)],
        )
        load_before = loadavg()
        try:
            server.start()
            assert server.proc is not None
            pid, port = server.proc.pid, server.api_port
            for i in range(args.rounds):
                before = memory(pid)
                cpu0 = cpu_seconds(server)
                up = upload(port, zpath)
                cpu1 = cpu_seconds(server)
                after_up = memory(pid)
                down = download(port, up["project"])
                cpu2 = cpu_seconds(server)
                after_down = memory(pid)
                up["server_cpu_s"] = round(cpu1 - cpu0, 2)
                down["server_cpu_s"] = round(cpu2 - cpu1, 2)
                if down["bytes"] != zpath.stat().st_size:
                    errors.append(f"round {i}: downloaded {down['bytes']} bytes")
                rounds.append(
                    {
                        "upload": up,
                        "download": down,
                        "rss_before_mib": round(before["VmRSS"] / 1024**2, 1),
                        "rss_after_mib": round(after_down["VmRSS"] / 1024**2, 1),
                        "peak_mib": round(after_down["VmHWM"] / 1024**2, 1),
                        "growth_mib": round((after_down["VmHWM"] - before["VmRSS"]) / 1024**2, 1),
                        "peak_after_upload_mib": round(after_up["VmHWM"] / 1024**2, 1),
                    }
                )
                console.print(f"round {i + 1}: {rounds[-1]}")
        except Exception as exc:  # reported, and the exit code says so
            errors.append(f"{type(exc).__name__}: {exc}")
            console.print(server.log_tail())
        finally:
            server.stop()
    best_up = max((r["upload"]["mb_s"] for r in rounds), default=0.0)
    best_down = max((r["download"]["mb_s"] for r in rounds), default=0.0)
    growth = max((r["growth_mib"] for r in rounds), default=0.0)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "size_mib": args.size_mib,
        "rounds": rounds,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "targets": {
            "upload_mb_s": {"target": TARGET_MB_S, "value": best_up, "met": best_up >= 200},
            "download_mb_s": {"target": TARGET_MB_S, "value": best_down, "met": best_down >= 200},
            "memory_growth_mib": {
                "target": TARGET_GROWTH_MIB,
                "value": growth,
                "met": growth <= TARGET_GROWTH_MIB,
            },
        },
        "errors": errors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"transfer of a {args.size_mib} MiB project over loopback")
    for col in ("round", "upload MB/s", "answer after last byte s", "download MB/s", "peak MiB"):
        table.add_column(col, justify="right")
    for i, r in enumerate(rounds, 1):
        table.add_row(
            str(i),
            str(r["upload"]["mb_s"]),
            str(r["upload"]["answer_after_last_byte_s"]),
            str(r["download"]["mb_s"]),
            f"{r['peak_mib']} (+{r['growth_mib']})",
        )
    console.print(table)
    for name, t in result["targets"].items():
        console.print(
            f"{name}: {t['value']} (target {t['target']}): {'met' if t['met'] else 'NOT met'}"
        )
    for e in errors:
        console.print(f"[red]{e}[/red]")
    console.print(f"written to {args.out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
