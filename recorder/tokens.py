"""Device and reader tokens: who may send to the recorder, and who may read its status and feed.

A token is a 256-bit random secret (`secrets.token_urlsafe(32)`), shown once when it is made
(`recorder tokens add`) and sent by a device, a bridge or a reader as `Authorization: Bearer
<token>`. The token file (`recorder serve --tokens FILE`) keeps, per token, only:

    id          a short random name, to list and revoke it by
    label       what the operator called it ("glasses 3", "bridge in the van", "dashboard")
    sha256      the SHA-256 of the token, hex
    serials     the device serials it may write, or any_serial for a bridge forwarding several glasses
    read        whether it may read /status, /metrics and /feed
    created     when it was made (UTC)

Why a plain SHA-256 and no slow KDF (bcrypt, scrypt, argon2): those exist to make guessing a
low-entropy password from its hash expensive. A token has 256 bits from the OS's random source;
no number of guesses finds one from its hash, slow or fast, so the file is safe to lose to a
reader of the disk and a check costs microseconds per request.

The file is JSON, written whole to a temporary file beside it and moved into place
(os.replace), with mode 0600: a reader (the server re-reads it when it changes) never sees half
a file. Adding to an existing file keeps the tokens in it; a file that is not a token file is
refused, never overwritten. Changes (add, revoke) hold an exclusive lock on the file's folder
(flock) while they read and rewrite it, so that two at once do not lose one of them.

Checking (TokenChecker): the presented token's SHA-256 is compared with every stored hash with
hmac.compare_digest, and the loop does not stop at a match, so the time a check takes does not
depend on which entry, if any, matched. The file is looked at (its mtime, size and inode) at
most once a second and re-read when it changed: a revoked token is refused within about a
second, without a restart. A file that has disappeared refuses every token (removing it is a
way to lock everything out); one that cannot be parsed keeps the tokens read last, and the
console says so.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

FORMAT_VERSION = 1
# How often, at most, the server looks at the token file for changes.
RELOAD_INTERVAL_S = 1.0


class TokenFileError(Exception):
    """The token file cannot be read or written; the message says what to do."""


@dataclass(frozen=True)
class Token:
    id: str
    label: str
    sha256: str
    serials: tuple[str, ...] = ()
    any_serial: bool = False
    read: bool = False
    created: str = ""

    def may_write(self, serial: str) -> bool:
        return self.any_serial or serial in self.serials

    @property
    def writes(self) -> bool:
        return self.any_serial or bool(self.serials)

    def permissions(self) -> str:
        parts = []
        if self.any_serial:
            parts.append("write any serial")
        elif self.serials:
            parts.append("write " + ",".join(self.serials))
        if self.read:
            parts.append("read")
        return "; ".join(parts) or "nothing"

    def as_dict(self) -> dict:
        return {"id": self.id, "label": self.label, "sha256": self.sha256, "serials": list(self.serials),
                "any_serial": self.any_serial, "read": self.read, "created": self.created}

    @classmethod
    def from_dict(cls, entry: dict) -> Token:
        return cls(id=str(entry["id"]), label=str(entry.get("label", "")), sha256=str(entry["sha256"]).lower(),
                   serials=tuple(str(s) for s in entry.get("serials", ())),
                   any_serial=bool(entry.get("any_serial", False)), read=bool(entry.get("read", False)),
                   created=str(entry.get("created", "")))


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def read_file(path: Path) -> list[Token]:
    """The tokens in `path`; a missing file holds none. Raises TokenFileError for a file that is
    not a token file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
        return [Token.from_dict(entry) for entry in data["tokens"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenFileError(f"{path} is not a token file written by `recorder tokens` ({exc})") from None


def write_file(path: Path, tokens: list[Token]) -> None:
    """Write the whole file atomically (a temporary file beside it, then os.replace), mode 0600."""
    path = Path(path)
    payload = json.dumps({"version": FORMAT_VERSION, "tokens": [t.as_dict() for t in tokens]}, indent=1) + "\n"
    folder = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def _changing(path: Path):
    """An exclusive lock for a read-modify-write of the token file: flock on its folder (the
    file itself is replaced, so a lock on it would not hold across the change)."""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def add(path: Path, *, label: str = "", serials: list[str] | tuple[str, ...] = (), any_serial: bool = False,
        read: bool = False) -> tuple[str, Token]:
    """Make a token, store its hash in `path` beside the tokens already there; returns
    (the token, its entry). The token itself is not stored anywhere: show it to the user once."""
    if not (serials or any_serial or read):
        raise ValueError("a token needs a permission: serials, any_serial or read")
    with _changing(path):
        tokens = read_file(path)
        token = secrets.token_urlsafe(32)
        ids = {t.id for t in tokens}
        new_id = secrets.token_hex(4)
        while new_id in ids:
            new_id = secrets.token_hex(4)
        entry = Token(id=new_id, label=label, sha256=digest(token), serials=tuple(dict.fromkeys(serials)),
                      any_serial=any_serial, read=read,
                      created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
        write_file(path, [*tokens, entry])
    return token, entry


def revoke(path: Path, name: str) -> Token:
    """Remove the token with id `name` (or, failing that, the one token labelled `name`);
    returns its entry. Raises KeyError when there is no such token (or several with that label)."""
    with _changing(path):
        tokens = read_file(path)
        matches = [t for t in tokens if t.id == name] or [t for t in tokens if t.label == name]
        if len(matches) != 1:
            raise KeyError(f"no token with id {name!r} in {path}" if not matches else
                           f"{len(matches)} tokens are labelled {name!r}: revoke one by its id")
        write_file(path, [t for t in tokens if t is not matches[0]])
    return matches[0]


def bearer(value: str | None) -> str | None:
    """The token in an Authorization header value `Bearer <token>`, else None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@dataclass
class TokenChecker:
    """The server's view of the token file, re-read when it changes (at most once a second)."""

    path: Path
    tokens: list[Token] = field(default_factory=list)
    on_error: object = None  # called with a message when the file changed and cannot be read
    _signature: tuple | None = None
    _checked: float = float("-inf")

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.tokens = read_file(self.path)  # a broken file stops the server at start
        self._signature = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._checked < RELOAD_INTERVAL_S:
            return
        self._checked = now
        signature = self._stat()
        if signature == self._signature:
            return
        self._signature = signature
        if signature is None:
            self.tokens = []  # the file is gone: nobody gets in
            return
        try:
            self.tokens = read_file(self.path)
        except TokenFileError as exc:
            if callable(self.on_error):
                self.on_error(f"{exc}; the tokens read before stay in force")

    def authenticate(self, authorization: str | None) -> Token | None:
        """The entry of the token in an `Authorization: Bearer` header value, or None. Every
        stored hash is compared, in constant time each, whether or not one matched already."""
        self.refresh()
        token = bearer(authorization)
        if token is None:
            return None
        presented = digest(token).encode()
        found = None
        for entry in self.tokens:
            if hmac.compare_digest(presented, entry.sha256.encode()) and found is None:
                found = entry
        return found
