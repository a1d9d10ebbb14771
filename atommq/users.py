"""The users file: one `name:hash` line per user, managed by `atommq users`. Passwords are kept
only as a salted scrypt hash (standard library); they are never logged or written anywhere else.

Knows nothing of HTTP, XML or SQL.
"""

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading

# scrypt's cost: 16 MiB and about 0.1 s a check, on purpose (a stolen file is slow to attack).
# A FastCGI process remembers a name and password it has checked, so it pays this once.
_N, _R, _P = 2**14, 8, 1
_SCHEME = "$scrypt$"
NAME_RULE = "1 to 64 letters, digits, '.', '_', '@' or '-', not starting with '@'"
NAME = re.compile(r"\A[\w.-][\w.@-]{0,63}\Z")


class UsersFileError(Exception):
    """The users file cannot be read or written, or a line of it is not `name:hash`."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    return f"{_SCHEME}{_N}:{_R}:{_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        cost, salt, digest = stored.removeprefix(_SCHEME).split("$")
        n, r, p = (int(part) for part in cost.split(":"))
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), n, r, p)
    except ValueError:
        return False  # a damaged line lets no one in
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def read(path: str) -> dict[str, str]:
    """name -> hash, in file order. A file that does not exist holds no users."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise UsersFileError(f"cannot read users file {path!r}: {error}") from None
    users = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, colon, stored = line.partition(":")
        if not colon or not NAME.match(name) or not stored.startswith(_SCHEME):
            raise UsersFileError(
                f"users file {path!r}, line {number}: not name:hash; fix it with atommq users"
            )
        users[name] = stored
    return users


def write(path: str, users: dict[str, str]) -> None:
    """Replace the file at once (a reader sees the old or the new one, never half), keeping the
    old file's mode and owner; a new file is readable by its owner and group only."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    handle, temporary = tempfile.mkstemp(prefix=".users-", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write("# AtomMQ users: edit with `python3 -m atommq users`\n")
            file.writelines(f"{name}:{stored}\n" for name, stored in users.items())
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, old.st_mode & 0o777 if old else 0o640)
        if old and os.geteuid() == 0:
            os.chown(temporary, old.st_uid, old.st_gid)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise UsersFileError(f"cannot write users file {path!r}: {error.strerror}") from None


class Users:
    """The users file as a running server sees it: read again when it changes, so that
    `atommq users add` takes effect without a restart. Thread-safe."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}
        # Checked (name, password, hash) triples, as keyed digests: no password is kept.
        self._key = secrets.token_bytes(32)
        self._checked: set[bytes] = set()
        self._dummy = ""

    def _current(self) -> dict[str, str]:
        try:
            status = os.stat(self.path)
            stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        except OSError as error:
            raise UsersFileError(f"cannot read users file {self.path!r}: {error.strerror}") from None
        with self._lock:
            if stamp != self._stamp:
                self._users, self._stamp = read(self.path), stamp
            return self._users

    def authenticate(self, name: str, password: str) -> bool:
        stored = self._current().get(name)
        if stored is None:
            # As slow as for a known name, so that timing does not tell which names exist.
            self._dummy = self._dummy or hash_password(secrets.token_hex(8))
            verify_password(password, self._dummy)
            return False
        token = hmac.digest(
            self._key, f"{name}\0{password}\0{stored}".encode("utf-8", "surrogatepass"), "sha256"
        )
        if token in self._checked:
            return True
        if not verify_password(password, stored):
            return False
        with self._lock:
            if len(self._checked) > 10_000:
                self._checked.clear()
            self._checked.add(token)
        return True
