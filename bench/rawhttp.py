"""A bare HTTP/1.1 keep-alive client for the load test: one connection per simulated node.

httpx costs about a millisecond of CPU per request, so 200 simulated nodes driving a
server at a few thousand requests per second would need more cores than the server has;
this client costs a small fraction of that. It speaks only what the load test needs:
requests with a body of known length, answers with `Content-Length` (uvicorn sends it for
every answer of the API), a reconnect after any error or a `Connection: close`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class HttpError(Exception):
    """The connection failed or the answer could not be read (a transport error)."""


class Answer:
    """A status code and a body."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Connection:
    """Requests to one server over one kept-alive connection, one at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None):
        self.host = host
        self.port = port
        fixed = {"Host": f"{host}:{port}", **(headers or {})}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        timeout: float = 30.0,
    ) -> Answer:
        """One request; HttpError on any transport failure (the next request reconnects)."""
        async with self._lock:
            try:
                async with asyncio.timeout(timeout):
                    return await self._exchange(method, path, body, content_type)
            except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as e:
                self.close()
                raise HttpError(f"{method} {path}: {type(e).__name__} {e}") from None

    async def json(self, method: str, path: str, payload: Any, timeout: float = 30.0) -> Answer:
        data = json.dumps(payload).encode()
        return await self.request(method, path, data, "application/json", timeout)

    async def _exchange(
        self, method: str, path: str, body: bytes, content_type: str | None
    ) -> Answer:
        if self._reader is not None and self._reader.at_eof():
            self.close()  # the server closed it while it was idle (keep-alive timeout)
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        assert reader is not None
        head = f"{method} {path} HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        writer.write(head.encode() + self._fixed + b"\r\n" + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
            elif name == "transfer-encoding":
                raise ValueError("chunked answers are not supported")
        data = await reader.readexactly(length) if length else b""
        if close:
            self.close()
        return Answer(status, data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
