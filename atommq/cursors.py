"""The two keepers of `atommq consume`'s cursor, the id of the last message processed: each
reads it, saves it, and keeps two runs apart. No loop (consume.py's).

- `--state FILE`, a line in a local file, written atomically and durably. One run at a time
  holds FILE (a lock beside it, inherited by COMMAND): another exits 3, or waits (--wait-lock).
- `--name NAME`, the server's named consumer URL/consumer=NAME: read at the start (none yet:
  the first message, or after the newest with --from-now), moved after each message by a PUT
  that holds only if it is still where this run last saw it (If-Match; If-None-Match: * for a
  new one). A 412 means another run with this name moved it: this one stops at once (exit 3)
  and never overwrites it. No lock file: that condition is what keeps two runs with one name
  from moving the cursor back or over each other (each may give a message the other gave).
  A save that fails for --retry-for seconds stops the run (75; with --follow too): its message
  is given again by the next run.

Standard library only (see client.py).
"""

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from atommq.client import EXIT_LOCKED, EXIT_REFUSED, EXIT_USAGE, Answer, ClientError, Feed

# A message id as a named consumer's GET gives it, the uuid in group 1.
_MESSAGE_ID = re.compile(
    r"(?:urn:uuid:)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
)


class StateFile:
    """The cursor: the id of the last message processed, one line in a file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.where = f"the state file {self.path}"
        # Why the server may not know a cursor read from FILE, when no message was removed.
        self.stranger = (
            "is another feed's or server's, or its message was removed by an AtomMQ older than 0.9"
        )

    def read(self) -> str | None:
        """The cursor; None when there is no file yet; "" when the file says to start at the first."""
        try:
            return self.path.read_text("utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise ClientError(EXIT_USAGE, f"cannot read the state file {self.path}: {error}") from None

    def save(self, cursor: str) -> None:
        """Write the cursor durably: a temporary file, synced, renamed over FILE, and the folder
        synced, so that after a crash FILE holds this cursor or the one before, whole."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as file:
                file.write(cursor + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise ClientError(
                EXIT_USAGE, f"cannot write the state file {self.path}: {error.strerror}"
            ) from None

    @contextlib.contextmanager
    def locked(self, wait: bool) -> Iterator[int]:
        """Held for a run: a second run on the same FILE exits (EXIT_LOCKED), or waits. Yields
        the lock's descriptor: a COMMAND that inherits it holds the lock until it ends too."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise ClientError(EXIT_USAGE, f"cannot use {lock_path}: {error.strerror}") from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise ClientError(
                    EXIT_LOCKED,
                    f"another run is consuming with {self.path}; this one stops (--wait-lock waits)",
                ) from None
            yield descriptor
        finally:
            os.close(descriptor)


class ServerCursor:
    """The cursor kept by the server: the feed's named consumer URL/consumer=NAME, only ever
    moved from where this run last saw it (If-Match), so that a run never overwrites another's."""

    def __init__(self, feed: Feed, name: str, retry_for: float) -> None:
        self.feed = feed
        self.below = f"/consumer={quote(name, safe='')}"
        self.retry_for = retry_for
        self.where = f"the consumer {name!r}"
        self.stranger = "names a message the feed does not have"
        self.tag = ""  # its ETag when this run last saw it; "": it did not exist

    def read(self) -> str | None:
        """The cursor; None when there is no such consumer (or feed) yet."""
        answer = self.feed.retrying(
            "GET", below=self.below, retry_for=self.retry_for, expected=frozenset({404})
        )
        if answer.status == 404:
            self.tag = ""
            return None
        return self._take(answer)

    def save(self, cursor: str) -> None:
        """Move the consumer to `cursor` if it is still where this run saw it; else EXIT_LOCKED."""
        condition = {"If-Match": self.tag} if self.tag else {"If-None-Match": "*"}
        try:
            answer = self.feed.retrying(
                "PUT",
                body=cursor.encode("utf-8"),
                headers={"Content-Type": "text/plain; charset=utf-8", **condition},
                retry_for=self.retry_for,
                expected=frozenset({412}),
                below=self.below,
            )
        except ClientError as error:
            raise ClientError(error.code, f"{error.line}; {self.where} stays before {cursor}") from None
        if answer.status == 412:
            now = self.read()
            if answer.attempts > 1 and now is not None and _uuid(now) == _uuid(cursor):
                return  # an earlier attempt of this PUT moved it; its answer was lost
        else:
            now = self._take(answer)  # where it is now: another run may have moved it since
            if _uuid(now) == _uuid(cursor):
                return
        raise ClientError(
            EXIT_LOCKED,
            f"another run with this name moved {self.where} (now {now or 'removed'}); this one stops "
            f"without saving {cursor}",
        )

    def locked(self, wait: bool) -> contextlib.AbstractContextManager[int]:
        """No lock: the If-Match of each save does its work."""
        return contextlib.nullcontext(-1)

    def _take(self, answer: Answer) -> str:
        """The cursor a GET or PUT answered with; its ETag is what the next save is conditional on."""
        found = _MESSAGE_ID.fullmatch(answer.line().strip())
        if found is None:
            raise ClientError(
                EXIT_REFUSED,
                f"{self.feed.url}{self.below} did not answer a message id "
                f"({answer.headers.get('content-type', 'no type')}): does this AtomMQ have named consumers?",
            )
        uuid = found.group(1).lower()
        self.tag = answer.headers.get("etag") or f'"{uuid}"'
        return f"urn:uuid:{uuid}"


def _uuid(cursor: str) -> str:
    return cursor.lower().removeprefix("urn:uuid:")
