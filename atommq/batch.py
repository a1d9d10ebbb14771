"""Group commit: the writes that a process's threads ask for while one of them waits for the
database's write lock, or holds it, are run together when it gets the lock, each in a savepoint
of one transaction, and committed by one COMMIT (one fsync on SQLite).

Generic: no SQL (the transaction and the savepoint are the caller's), no HTTP.
"""

import contextlib
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

S = TypeVar("S")  # what a transaction hands its work: session.py's Session
T = TypeVar("T")

# The most writes one transaction commits: bounds what the first of them waits for the others.
MOST_PER_COMMIT = 32


class _NotRun(Exception):
    """The outcome of a write that its batch never got to (the leading thread was interrupted)."""


class _Write:
    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = _NotRun("the write was not run")
        self.lead = False  # this write's thread runs the next batch
        self.done = threading.Event()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class GroupCommit(Generic[S]):
    """`run(work)` runs work(session) in a transaction and commits it, and returns what work
    returned (or raises what it raised), once committed. A thread that asks while another leads a
    batch queues; the leader takes the queue once its transaction has begun (arrival order,
    MOST_PER_COMMIT at most), and when the batch is committed, the first thread still queued
    leads the next. Every write runs in its leader's thread: a session is only ever used by the
    thread that opened it. A write alone needs no savepoint. A write that raises an error of its
    own is rolled back to its savepoint and the others are committed; one that fails the
    transaction (the database's error) is rolled back with it, fails, and the others run again in
    a new one; if the transaction cannot begin or commit, every write of the batch fails with
    that error, and none is stored. A follower's wait is bounded by its leader's: the write lock's
    time limit, and the database's."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[S]],
        savepoint: Callable[[S], AbstractContextManager[None]],
        contained: Callable[[BaseException], bool],
    ) -> None:
        self._transaction = transaction
        self._savepoint = savepoint
        # Whether a write's error stays within its savepoint (an application error) or fails the
        # transaction (the database's: the connection may be unusable).
        self._contained = contained
        self._lock = threading.Lock()
        self._queue: list[_Write] = []
        self._leading = False

    def run(self, work: Callable[[S], T]) -> T:
        write = _Write(work)
        with self._lock:
            self._queue.append(write)
            leads = not self._leading
            self._leading = True
        if not leads:
            write.done.wait()  # the leader always ends its batch: its waits are bounded
            if not write.lead:
                return write.outcome()  # type: ignore[no-any-return]
        # The queue's first write is ours (a thread leads only from the front), and the batch
        # is what is queued once the transaction has begun: the writes that queued while the
        # leader waited for the database's write lock are committed with its own.
        batch: list[_Write] = []
        try:
            self._commit(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leading = False
            for other in batch[1:]:
                other.done.set()
        return write.outcome()  # type: ignore[no-any-return]

    def _take(self, batch: list[_Write]) -> None:
        with self._lock:
            batch.extend(self._queue[:MOST_PER_COMMIT])
            del self._queue[:MOST_PER_COMMIT]

    def _commit(self, batch: list[_Write]) -> None:
        """Take a batch from the queue into `batch`, run it in one transaction, and set each
        write's outcome. A write that fails the transaction (the database's error) fails, and
        the others run again in a new one: a publish fails for its own reason, not another's."""
        pending: list[_Write] | None = None  # not yet taken: the transaction has not begun
        while True:
            culprit = None
            try:
                with self._transaction() as session:
                    if pending is None:
                        self._take(batch)
                        pending = list(batch)
                    alone = len(pending) == 1  # its transaction is its savepoint
                    for write in pending:
                        try:
                            with contextlib.nullcontext() if alone else self._savepoint(session):
                                write.result = write.work(session)
                            write.error = None
                        except Exception as error:
                            write.result, write.error = None, error
                            if alone or not self._contained(error):
                                culprit = write
                                raise
                return
            except BaseException as error:
                if pending is None:  # it did not begin: what waited for it fails with it
                    self._take(batch)
                    pending = list(batch)
                if culprit is None:  # began, or commit, failed: rolled back, nothing is stored
                    for write in pending:
                        write.result, write.error = None, error
                    if not isinstance(error, Exception):
                        raise
                    return
                culprit.error = error  # as the transaction raised it (store.py's meaning)
                pending.remove(culprit)
                if not pending:
                    return
