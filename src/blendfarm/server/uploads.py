"""Receiving uploads: bytes counted as they stream, against the size cap and the disk reserve.

Nothing here trusts `Content-Length`: a chunked upload is measured the same way. A multipart
submission is parsed as it arrives, its file part written straight to one temporary file in
the data dir, which the project then adopts in place (never a second copy on disk).

Received bytes are gathered into blocks of WRITE_BLOCK; each block is written (and hashed)
on a worker thread while the next one arrives, so the disk and the network work at once and
the server holds at most two blocks of an upload in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import BadInput, TooLarge
from .files import DataDir

CHECK_EVERY = 64 * 1024**2  # bytes between two looks at the free disk space
MAX_FIELD = 64 * 1024  # bytes of one text field of a form
MAX_FIELDS = 20
WRITE_BLOCK = 4 * 1024**2  # bytes gathered before a write (two such blocks in memory at most)


class FileSink:
    """Writes an upload to an open file and hashes it, a block at a time on a worker thread
    while the event loop receives the next one."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.hash = hashlib.sha256()
        self._pieces: list[bytes] = []  # received, not written yet (never copied together)
        self._size = 0
        self._writing: asyncio.Future[None] | None = None

    async def write(self, data: bytes) -> None:
        self._pieces.append(data)
        self._size += len(data)
        if self._size >= WRITE_BLOCK:
            await self._flush()

    async def close(self) -> str:
        """Write what is left and close the file; the sha256 of everything written."""
        await self._flush()
        if self._writing is not None:
            await self._writing
            self._writing = None
        self.fh.close()
        return self.hash.hexdigest()

    async def abort(self) -> None:
        """Stop: wait for the write in progress (it holds the file), close the file."""
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
            self._writing = None
        self.fh.close()

    async def _flush(self) -> None:
        if self._writing is not None:
            await self._writing  # the previous block is on the disk: its memory is free
            self._writing = None
        if not self._pieces:
            return
        pieces, size = self._pieces, self._size
        self._pieces, self._size = [], 0
        if size < WRITE_BLOCK // 4:  # small (a chunk PNG): a thread costs more than this
            self._put(pieces)
        else:
            self._writing = asyncio.get_running_loop().run_in_executor(None, self._put, pieces)

    def _put(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.hash.update(piece)  # releases the GIL, as the writes do
        self.fh.writelines(pieces)


class Meter:
    """Counts bytes written to the data disk; refuses past `limit` or into the reserve."""

    def __init__(self, data: DataDir, limit: int, reserve: int):
        self.data = data
        self.limit = limit
        self.reserve = reserve
        self.count = 0
        self._checked = 0

    async def add(self, n: int) -> None:
        self.count += n
        if self.count > self.limit:
            raise TooLarge(f"the upload is larger than {self.limit} bytes")
        if self.count - self._checked >= CHECK_EVERY:
            self._checked = self.count
            await run_in_threadpool(self.data.require_free, 0, self.reserve)


async def check_declared(request: Request, data: DataDir, limit: int, reserve: int) -> None:
    """Refuse early what the declared size already rules out (the stream is measured anyway)."""
    length = request.headers.get("content-length", "")
    if length.isdigit():
        if int(length) > limit:
            raise TooLarge(f"the upload is larger than {limit} bytes")
        await run_in_threadpool(data.require_free, int(length), reserve)
    else:
        await run_in_threadpool(data.require_free, 0, reserve)


async def receive_body(request: Request, data: DataDir, limit: int, reserve: int) -> Path:
    """Stream a raw request body to a temporary file in the data dir; measured as it comes."""
    tmp = data.temp_file()
    meter = Meter(data, limit, reserve)
    sink = FileSink(open(tmp, "wb"))  # noqa: SIM115 - the sink closes it
    try:
        async for block in request.stream():
            await meter.add(len(block))
            await sink.write(block)
        await sink.close()
    except BaseException:
        await sink.abort()
        tmp.unlink(missing_ok=True)
        raise
    return tmp


async def receive_small(request: Request, limit: int) -> bytes:
    """A small raw request body, in memory (TooLarge past `limit` bytes, whatever was
    declared)."""
    pieces: list[bytes] = []
    size = 0
    async for block in request.stream():
        size += len(block)
        if size > limit:
            raise TooLarge(f"the upload is larger than {limit} bytes")
        pieces.append(block)
    return b"".join(pieces)


@dataclass
class Form:
    """A parsed submission: the text fields and the one file, already on the data disk."""

    fields: dict[str, str] = field(default_factory=dict)
    file: Path | None = None
    filename: str = ""
    sha256: str = ""  # of the file, hashed as it arrived


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    text: bytearray = field(default_factory=bytearray)


async def receive_form(request: Request, data: DataDir, limit: int, reserve: int) -> Form:
    """Parse a multipart/form-data submission as it streams, the file written to the data dir.

    BadInput when it is not such a form, holds more than one file or a file under another
    name than `file`, or too many or too long fields.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadInput("send the project as multipart/form-data with a 'file' field")
    form = Form()
    meter = Meter(data, limit, reserve)
    part = _Part()
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    pending: list[bytes] = []  # file bytes of the current callback batch
    events: list[tuple[str, _Part]] = []
    sink: FileSink | None = None

    def on_part_begin() -> None:
        nonlocal part
        part = _Part()
        headers.clear()

    def on_header_field(buf: bytes, start: int, end: int) -> None:
        header_field.extend(buf[start:end])

    def on_header_value(buf: bytes, start: int, end: int) -> None:
        header_value.extend(buf[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _kind, options = parse_options_header(headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw = options.get(b"filename")
        part.filename = None if raw is None else raw.decode("utf-8", "replace")
        events.append(("begin", part))

    def on_part_data(buf: bytes, start: int, end: int) -> None:
        if part.filename is None:
            part.text.extend(buf[start:end])
            if len(part.text) > MAX_FIELD:
                raise BadInput(f"the form field {part.name!r} is too long")
        else:
            pending.append(buf[start:end])

    def on_part_end() -> None:
        events.append(("end", part))

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise BadInput(f"the form could not be read: {exc}") from None
            for kind, ev_part in events:
                if kind == "begin" and ev_part.filename is not None:
                    if ev_part.name != "file":
                        raise BadInput("only the 'file' field may hold a file")
                    if form.file is not None:
                        raise BadInput("send one file per submission")
                    form.file = data.temp_file()
                    form.filename = ev_part.filename
                    sink = FileSink(open(form.file, "wb"))  # noqa: SIM115
                if kind == "end" and ev_part.filename is None:
                    if len(form.fields) >= MAX_FIELDS:
                        raise BadInput("the form has too many fields")
                    form.fields[ev_part.name] = ev_part.text.decode("utf-8", "replace")
            if pending:
                if sink is None:
                    raise BadInput("the form could not be read: file data outside a part")
                for block in pending:
                    await meter.add(len(block))
                    await sink.write(block)
                pending.clear()
            if sink is not None and any(k == "end" and e.filename is not None for k, e in events):
                form.sha256 = await sink.close()
            events.clear()
        parser.finalize()
        if sink is not None and not sink.fh.closed:
            form.sha256 = await sink.close()
    except BaseException:
        if sink is not None:
            await sink.abort()
        if form.file is not None:
            form.file.unlink(missing_ok=True)
        raise
    if form.file is None:
        raise BadInput("the form has no 'file' with the project")
    return form


def discard(path: Path | None) -> None:
    """Remove a temporary upload if it is still there (it was not adopted)."""
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
