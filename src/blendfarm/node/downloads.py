"""Streaming a file from the server to disk and checking its sha256 on the way."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx

from ..errors import BlendfarmError


def error_text(resp: httpx.Response) -> str:
    """The server's one-line error message, or the HTTP status."""
    try:
        return str(resp.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {resp.status_code}"


def download_verified(
    client: httpx.Client,
    url: str,
    dest: Path,
    sha256: str,
    what: str,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Stream `url` to `dest`; BlendfarmError (and no file) unless it hashes to `sha256`."""
    digest = hashlib.sha256()
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                resp.read()
                raise BlendfarmError(f"cannot download {what}: {error_text(resp)}")
            with open(dest, "wb") as fh:
                for block in resp.iter_bytes(1024 * 1024):
                    digest.update(block)
                    fh.write(block)
                    if progress:
                        progress(fh.tell())
        if digest.hexdigest() != sha256:
            raise BlendfarmError(f"{what} arrived damaged (sha256 mismatch)")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
