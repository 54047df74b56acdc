"""The node token and the admin password, kept in the data dir (0600).

The password is stored as a scrypt hash. Secrets are compared in constant time, and failed
password attempts are rate-limited per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_private_json
from ..errors import Conflict, Forbidden, TooManyRequests, Unauthorized

SECRETS_FILE = "secrets.json"
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
FREE_GUESSES = 5  # wrong passwords from one address before it has to wait
LONGEST_WAIT = 30.0  # the wait doubles per wrong guess up to this: never a long lock-out
FORGET_AFTER = 900.0  # an address quiet this long starts afresh


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
        write_private_json(path, stored)
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
    write_private_json(path, stored)
    return dict(stored["password"])


def guess_wait(wrong: int) -> float:
    """Seconds an address must wait after `wrong` wrong guesses in a row."""
    if wrong < FREE_GUESSES:
        return 0.0
    return float(min(LONGEST_WAIT, 2.0 ** (wrong - FREE_GUESSES)))


@dataclass
class _Guesses:
    wrong: int = 0
    last: float = 0.0


def new_owner_key() -> tuple[str, str]:
    """A project's owner key and the hash the server keeps of it."""
    key = secrets.token_urlsafe(24)
    return key, owner_key_hash(key)


def owner_key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """What a request offers to act on a project: its owner key, the admin password, or none."""

    owner_key: str | None
    password: str | None
    client: str


class Guard:
    """Checks node tokens and admin passwords for the API.

    Wrong passwords are limited per client address with a backoff (`guess_wait`): a guesser
    gets a handful of tries a minute at most, and the admin sharing its address waits half a
    minute at worst, never a lock-out. The address is the connection's, never a forwarded
    header unless the admin named the proxy (`trusted_proxies`).
    """

    def __init__(self, secrets_: Secrets, fixed_password: bool = False):
        self.secrets = secrets_
        self.fixed_password = fixed_password
        self._guesses: dict[str, _Guesses] = {}
        self._lock = threading.Lock()

    def check_token(self, header: str | None) -> None:
        given = (header or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), self.secrets.token.encode()):
            raise Unauthorized("a valid node token is required (blendfarm node --token)")

    def check_password(self, given: str | None, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._guesses.get(client)
            if seen is not None and now - seen.last > FORGET_AFTER:
                seen = None
                del self._guesses[client]
            if seen is not None:
                left = seen.last + guess_wait(seen.wrong) - now
                if left > 0:
                    raise TooManyRequests(
                        f"too many wrong passwords from {client}: try again in {left:.0f} s"
                    )
        if given and check_password(given, self.secrets.password_hash):
            with self._lock:
                self._guesses.pop(client, None)
            return
        with self._lock:
            record = self._guesses.setdefault(client, _Guesses())
            record.wrong += 1
            record.last = now
        raise Forbidden("wrong admin password")

    def check_owner(self, stored_hash: str | None, given: Credentials, action: str) -> None:
        """Forbidden unless `given` holds the project's owner key or the admin password."""
        if given.owner_key and stored_hash:
            offered = owner_key_hash(given.owner_key)
            if hmac.compare_digest(offered.encode(), stored_hash.encode()):
                return
        if given.password:
            self.check_password(given.password, given.client)
            return
        raise Forbidden(
            f"{action} needs the project's owner key (kept by the browser or shell that "
            "submitted it) or the admin password"
        )

    def may_change_password(self) -> None:
        """Conflict when the password comes from BLENDFARM_PASSWORD (a change would not last)."""
        if self.fixed_password:
            raise Conflict(
                "this server's admin password is set by BLENDFARM_PASSWORD: change it there "
                "and restart the server (a password changed here would revert at the next start)"
            )
