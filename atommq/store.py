"""The store: the transactions each request's work runs in (a session.Session), on the
connection database.py makes, through dataset (SQLAlchemy underneath); retention's and a feed's
deletion's batches. No HTTP, no XML; the SQL itself is session.py's and consumers.py's.

Every request's work runs in one transaction (`Store.transaction`), reads included.
"""

import contextlib
import datetime
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import sqlalchemy as sa

from atommq import database
from atommq.batch import GroupCommit
from atommq.config import Config
from atommq.errors import StoreUnavailable
from atommq.retention import Limits
from atommq.schema import Schema
from atommq.session import Pruned, Session

T = TypeVar("T")
# Messages removed in one transaction by retention: a publisher waits for the database at most
# about that long (measured in bench/).
PRUNE_BATCH = 500


def _throw_away(connection: sa.Connection | None) -> None:
    """Close a connection that failed, and keep its driver connection out of the pool."""
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.invalidate()
            connection.close()


def _contained(error: BaseException) -> bool:
    """A write's own error, undone alone; not the database's, which fails its whole transaction."""
    return not isinstance(error, (sa.exc.DBAPIError, sa.exc.TimeoutError))


class Store:
    """One per process. Thread-safe: dataset gives each thread its own connection."""

    def __init__(self, config: Config, pool_size: int = 10) -> None:
        self._db = database.connect(config, pool_size)
        assert self._db.engine is not None
        self._engine = self._db.engine
        self.dialect = self._db.engine.dialect.name
        self._schema = Schema(self._db.engine)
        self._turns = database.writer_turns(config)
        self._writer: sa.Connection | None = None  # SQLite's writing connection (see writing)
        # At most pool_size transactions at once on pooled connections. dataset takes a
        # connection while it holds a lock of its own, which it also needs to give one back: a
        # thread that waits there for a pooled connection keeps every other from returning one
        # (seen: 100 waiting requests woken together hung for the pool's 30 s timeout). Threads
        # queue here instead, holding nothing.
        self._slots = threading.BoundedSemaphore(pool_size)
        # SQLite commits the writes a process's threads queue meanwhile together (batch.py):
        # an fsync per COMMIT is what its writers queue for. A database server overlaps commits
        # itself, and each connection writes alone.
        self._group = GroupCommit(self.writing, Session.savepoint, _contained) if self._turns else None

    def write(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in a transaction that writes (`writing`), committed; returns what
        it returned. On SQLite it may share its transaction with other threads' writes, each in
        a savepoint: if work raises, its writes are undone and the others' are not."""
        if self._group is None:
            with self.writing() as session:
                return work(session)
        return self._group.run(work)

    def prune(
        self,
        name: str,
        limits: Limits,
        now: datetime.datetime,
        dry_run: bool = False,
        most: int | None = None,
    ) -> int:
        """Remove the feed's messages that `limits` no longer keep, oldest first, PRUNE_BATCH in
        a transaction, so that publishers never wait long for the database; `most` in all, at
        most; returns how many (with `dry_run`, how many would go, and nothing is removed)."""
        total, after = 0, 0
        while most is None or total < most:
            batch = PRUNE_BATCH if most is None else min(PRUNE_BATCH, most - total)

            def step(session: Session, after: int = after, batch: int = batch) -> Pruned:
                return session.prune(name, limits, now, after, batch, remove=not dry_run)

            if dry_run:
                with self.transaction(commit=False) as session:
                    found = step(session)
            else:
                found = self.write(step)
            total, after = total + found.count, found.upto
            if not found.more:
                break
        return total

    def delete_feed(self, name: str, now: datetime.datetime) -> int:
        """Delete a feed and its consumers: its messages PRUNE_BATCH in a transaction (publishers
        to it go on meanwhile), then the feed's row and what is left, in one. Returns how many
        messages went. NotFound if there is no such feed."""
        everything = Limits(max_messages=0)
        removed = 0
        while True:

            def step(session: Session) -> Pruned:
                return session.prune(name, everything, now, 0, PRUNE_BATCH, remove=True)

            found = self.write(step)
            removed += found.count
            if not found.more:
                break
        when = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return removed + self.write(lambda session: session.delete_feed(name, when))

    def give_back_space(self) -> int | None:
        """On SQLite, return the file's free pages (what pruning freed) to the file system, at
        its next checkpoint; the bytes given back. None: not SQLite, or a file made before
        AtomMQ set auto_vacuum (it keeps its size; its free pages are reused by new messages)."""
        if self._turns is None:
            return None
        with self.writing() as session:
            return session.give_back_space()

    def newest(self, names: list[str]) -> dict[str, int]:
        """Session.newest in a transaction of its own (waiting.py's watcher asks it)."""
        with self.transaction() as session:
            return session.newest(names)

    @contextlib.contextmanager
    def writing(self, commit: bool = True) -> Iterator[Session]:
        """A transaction that writes. On SQLite it waits for its turn first (WriterTurns), and
        runs on the process's one writing connection, which only the turn's holder uses and
        which is kept from one transaction to the next: a connection taken from the pool and
        given back cost a publish about 0.07 ms, an eighth of its work. (A server's connections
        go back to the pool, which pings them before reuse: a restarted server is reconnected.)"""
        if self._turns is None:
            with self.transaction(commit) as session:
                yield session
            return
        with self._turns.turn(), self._database_errors(self._discard_writer):
            self._schema.ensure()
            if self._writer is None:
                self._writer = self._engine.connect()
            connection = self._writer
            connection.begin()
            try:
                yield Session(connection, self.dialect)
            except BaseException:
                connection.rollback()
                raise
            if commit:
                connection.commit()
            else:
                connection.rollback()

    @contextlib.contextmanager
    def transaction(self, commit: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends (rolled back instead with
        commit=False: a trial run), rolled back if the block raises."""
        if not self._slots.acquire(timeout=database.LOCK_WAIT_SECONDS):
            raise StoreUnavailable("the server is busy with other requests; try again shortly")
        try:
            with self._database_errors(self._discard_connection):
                self._schema.ensure()
                self._db.begin()
                try:
                    yield Session(self._db.executable, self.dialect)
                except BaseException:
                    self._db.rollback()
                    raise
                if commit:
                    self._db.commit()
                else:
                    self._db.rollback()
        finally:
            self._slots.release()

    @contextlib.contextmanager
    def _database_errors(self, discard: Callable[[], None]) -> Iterator[None]:
        """A driver's error, as what it means to a client (database.meaning). A failed statement
        or COMMIT can leave the driver connection unusable, and a rollback may not reach it:
        the connection is thrown away (`discard`)."""
        try:
            yield
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as error:
            discard()
            meaning = database.meaning(error, self.dialect)
            if meaning is not None:
                raise meaning from error
            raise

    def _discard_writer(self) -> None:
        connection, self._writer = self._writer, None
        _throw_away(connection)

    def _discard_connection(self) -> None:
        """Throw this thread's connection away, and dataset's record of its transaction. The
        one place that reaches into dataset's own state (its per-thread connections and
        transaction stack): after a failed COMMIT (SQLite's "database is locked") the driver
        connection refuses every later statement, dataset's rollback does not reach it, and
        dataset offers no way to drop it (a "failed" row was once committed with the next write)."""
        with self._db.lock:
            connection = self._db.connections.pop(threading.get_ident(), None)
        _throw_away(connection)
        if hasattr(self._db.local, "tx"):
            self._db.local.tx = []

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._db.close()
        if self._turns is not None:
            self._turns.close()
