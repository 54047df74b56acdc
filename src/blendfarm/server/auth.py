"""The node token and the admin password, kept in the data dir (0600).

The password is stored as a scrypt hash. Secrets are compared in constant time, and failed
password attempts are rate-limited per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import Forbidden, TooManyRequests, Unauthorized

SECRETS_FILE = "secrets.json"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
FAILURES_ALLOWED = 5
FAILURE_WINDOW = 60.0


def hash_password(password: str, salt: bytes | None = None) -> dict[str, str | int]:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return {"salt": salt.hex(), "hash": digest.hex(), **SCRYPT}


def check_password(password: str, stored: dict[str, str | int]) -> bool:
    digest = hashlib.scrypt(
        password.encode(),
        salt=bytes.fromhex(str(stored["salt"])),
        dklen=32,
        n=int(stored["n"]),
        r=int(stored["r"]),
        p=int(stored["p"]),
    )
    return hmac.compare_digest(digest.hex(), str(stored["hash"]))


@dataclass
class Secrets:
    token: str
    password_hash: dict[str, str | int]
    created: dict[str, str]  # secrets made on this start, to print once: {"token": ..., ...}


def _write_private(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def load_secrets(data_dir: Path, token: str = "", password: str = "") -> Secrets:
    """The farm's secrets: given ones win; otherwise read from the data dir or made once."""
    path = data_dir / SECRETS_FILE
    stored: dict[str, object] = {}
    if path.exists():
        stored = json.loads(path.read_text())
    created: dict[str, str] = {}
    if not stored.get("token"):
        stored["token"] = secrets.token_urlsafe(24)
        created["token"] = str(stored["token"])
    if not stored.get("password"):
        new = secrets.token_urlsafe(12)
        stored["password"] = hash_password(new)
        created["password"] = new
    if created:
        _write_private(path, stored)
    pw_hash = hash_password(password) if password else stored["password"]
    assert isinstance(pw_hash, dict)
    if token:
        created.pop("token", None)
    if password:
        created.pop("password", None)
    return Secrets(token=token or str(stored["token"]), password_hash=pw_hash, created=created)


def save_password(data_dir: Path, password: str) -> dict[str, str | int]:
    path = data_dir / SECRETS_FILE
    stored = json.loads(path.read_text()) if path.exists() else {}
    stored["password"] = hash_password(password)
    _write_private(path, stored)
    return dict(stored["password"])


class Guard:
    """Checks node tokens and admin passwords for the API."""

    def __init__(self, secrets_: Secrets):
        self.secrets = secrets_
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check_token(self, header: str | None) -> None:
        given = (header or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), self.secrets.token.encode()):
            raise Unauthorized("a valid node token is required (blendfarm node --token)")

    def check_password(self, given: str | None, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < FAILURE_WINDOW]
            self._failures[client] = recent
            if len(recent) >= FAILURES_ALLOWED:
                raise TooManyRequests("too many wrong passwords; wait a minute")
        if given and check_password(given, self.secrets.password_hash):
            return
        with self._lock:
            self._failures.setdefault(client, []).append(now)
        raise Forbidden("wrong admin password")
