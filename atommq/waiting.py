"""Requests that wait for a feed's next message (long polling): one watcher per process asks the
database for the newest seq of every feed someone waits on, every POLL_SECONDS while anyone
waits, and wakes the waiters of a feed that moved. A waiting request holds no transaction and no
connection: the watcher's one short query a poll is all that waiting costs the database,
however many wait. A publish in this process wakes the watcher at once. How many may wait at
once is counted across processes (Places): under CGI and mod_fcgid a waiting request is a whole
process.

No SQL (the query is the caller's), no HTTP.
"""

import contextlib
import errno
import fcntl
import hashlib
import os
import random
import stat
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

# How often the watcher asks while anyone waits: a message committed by another process (or
# another web server on the same database) reaches its waiters about this late at most.
POLL_SECONDS = 0.025


def places_folder(database_url: str, uid: int) -> Path:
    """Where the processes of user `uid` that use the database keep their places (Places)."""
    digest = hashlib.blake2b(database_url.encode("utf-8"), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / f"atommq-waiting-{uid}-{digest}"


class Places:
    """At most `most` requests wait at once among all the processes of AtomMQ on this machine
    that use one database: FastCGI threads, CGI processes and mod_fcgid's one-request processes
    alike (under mod_fcgid, a waiting request holds one of a fixed number of processes, and a
    publish would queue behind them). Place k is an exclusive flock on file k of a folder of
    the user's own in the temporary directory; the kernel frees a process's places when it ends,
    however it ends, and flocks taken through two opens conflict within a process too."""

    def __init__(self, database_url: str, most: int, report: Callable[[str], None]) -> None:
        self.folder = places_folder(database_url, os.getuid())
        self._most = most
        self._report = report

    @contextlib.contextmanager
    def place(self) -> Iterator[bool]:
        """Hold a place while the block runs: True, or False when all are taken (or they
        cannot be counted: said in the log once a process)."""
        try:
            descriptor = self._take()
        except OSError as error:
            self._report(f"waiting is off: its places in {self.folder} cannot be used: {error}")
            self._report = lambda line: None
            descriptor = None
        try:
            yield descriptor is not None
        finally:
            if descriptor is not None:
                os.close(descriptor)  # the lock goes with it

    def _take(self) -> int | None:
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.folder, 0o700)
        found = os.lstat(self.folder)
        # In a shared /tmp, someone else's folder of this name (or a link) is not ours to use.
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid():
            raise OSError(errno.EPERM, "it is not a folder of this user's")
        start = random.randrange(self._most)  # spread the takers over the files
        for k in range(self._most):
            path = self.folder / str((start + k) % self._most)
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return descriptor
            except BlockingIOError:
                os.close(descriptor)
            except BaseException:
                os.close(descriptor)
                raise
        return None


class Watcher:
    def __init__(
        self, newest: Callable[[list[str]], dict[str, int]], places: Places, report: Callable[[str], None]
    ) -> None:
        """`newest(feeds)`: each feed's newest seq (a feed missing from the answer has none yet).
        `places`: how many may wait at once. `report`: where a failed poll is told."""
        self._newest = newest
        self._places = places
        self._report = report
        self._changed = threading.Condition()
        self._seen: dict[str, int] = {}  # the newest seq the watcher knows, per watched feed
        self._waiting: Counter[str] = Counter()
        self._poll_now = threading.Event()
        self._thread: threading.Thread | None = None

    def wait(self, feed: str, seq: int, seconds: float) -> bool | None:
        """Wait until `feed` has a message after `seq`, `seconds` at most: True when it has,
        False when the time ran out, None at once when too many wait already (answer at once)."""
        deadline = time.monotonic() + seconds
        with self._places.place() as placed:
            return self._wait(feed, seq, deadline) if placed else None

    def _wait(self, feed: str, seq: int, deadline: float) -> bool:
        with self._changed:
            self._waiting[feed] += 1
            self._seen.setdefault(feed, seq)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="atommq-watcher", daemon=True)
                self._thread.start()
            try:
                while self._seen[feed] <= seq:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
                return True
            finally:
                self._waiting[feed] -= 1
                if not self._waiting[feed]:
                    del self._waiting[feed], self._seen[feed]

    def published(self) -> None:
        """A message was committed in this process: look now rather than at the next poll."""
        if self._waiting:
            self._poll_now.set()

    def _watch(self) -> None:
        while True:
            with self._changed:
                if not self._waiting:
                    self._thread = None
                    return
                feeds = list(self._waiting)
            try:
                found = self._newest(feeds)
            except Exception as error:  # the database is down: the waiters' time runs out
                self._report(f"the watcher for waiting requests could not poll the database: {error}")
                found = {}
                time.sleep(1)
            with self._changed:
                moved = False
                for feed, seq in found.items():
                    if feed in self._seen and seq > self._seen[feed]:
                        self._seen[feed] = seq
                        moved = True
                if moved:
                    self._changed.notify_all()
            self._poll_now.wait(POLL_SECONDS)
            self._poll_now.clear()
