"""Requests that wait for a feed's next message (long polling): one watcher per process asks the
database for the newest seq of every feed someone waits on, every POLL_SECONDS while anyone
waits, and wakes the waiters of a feed that moved. A waiting request holds no transaction and no
connection: the watcher's one short query a poll is all that waiting costs the database,
however many wait. A publish in this process wakes the watcher at once.

No SQL (the query is the caller's), no HTTP.
"""

import threading
import time
from collections import Counter
from collections.abc import Callable

# How often the watcher asks while anyone waits: a message committed by another process (or
# another web server on the same database) reaches its waiters about this late at most.
POLL_SECONDS = 0.025


class Watcher:
    def __init__(
        self, newest: Callable[[list[str]], dict[str, int]], most: int, report: Callable[[str], None]
    ) -> None:
        """`newest(feeds)`: each feed's newest seq (a feed missing from the answer has none yet).
        `most`: how many may wait at once in this process. `report`: where a failed poll is told."""
        self._newest = newest
        self._most = most
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
        with self._changed:
            if sum(self._waiting.values()) >= self._most:
                return None
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
