"""The connection to the database: dataset (SQLAlchemy underneath) set up and tuned for each
database AtomMQ supports, the folder a SQLite file needs, the turns its writers take, and what
a driver's error means.

No tables (schema.py's), no queries (session.py's, consumers.py's and statements.py's), no HTTP.
"""

import contextlib
import fcntl
import os
import pwd
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from atommq.config import Config, sqlite_path
from atommq.deferred import dataset  # its alembic imported only if used
from atommq.errors import ConfigError, StoreConflict, StoreUnavailable

# How long a writer waits for another's lock before giving up with a 503 (SQLite's busy
# timeout, PostgreSQL's lock_timeout, InnoDB's lock wait timeout).
LOCK_WAIT_SECONDS = 5
# How long connecting to a PostgreSQL or MariaDB host may take before a 503: an unreachable
# host answers nothing, and the operating system would wait minutes.
CONNECT_SECONDS = 5


def connect(config: Config, pool_size: int) -> dataset.Database:
    """The configured database, its connections set up on first use. A SQLite file's folder
    is checked (and created, for the default location) now: a bad one stops start-up."""
    url = config.database_url
    engine_kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 5}
    statements = []
    if url.startswith("sqlite"):
        _check_sqlite_folder(url, create=config.database_is_default)
        # FULL makes every acknowledged message durable; WAL (dataset's default) lets
        # readers run beside the one writer; the busy timeout makes writers queue.
        statements = ["PRAGMA synchronous=FULL", f"PRAGMA busy_timeout={LOCK_WAIT_SECONDS * 1000}"]
    else:
        # A pooled connection may have been closed by the server since: test it first.
        engine_kwargs["pool_pre_ping"] = True
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_SECONDS}
    if url.startswith("postgresql"):
        # A lock held for long (a stuck transaction, a manual LOCK TABLE) makes a publisher
        # wait 5 s at most, then answer 503, as SQLite's busy timeout does: not hang forever.
        engine_kwargs["connect_args"]["options"] = f"-c lock_timeout={LOCK_WAIT_SECONDS}s"
    if url.startswith(("mysql", "mariadb")):
        # REPEATABLE READ (MariaDB's default) would freeze a reader's snapshot, and a
        # reading connection would never see a new message; utf8mb4 is the UTF-8 that holds
        # every character (MariaDB's "utf8" stops at three bytes).
        engine_kwargs["isolation_level"] = "READ COMMITTED"
        engine_kwargs["connect_args"]["charset"] = "utf8mb4"
        # PyMySQL's connect_timeout ends with the TCP handshake, and a server that never
        # sends its greeting would hold the request forever: no answer in time is a 503.
        engine_kwargs["connect_args"]["read_timeout"] = config.database_timeout
        engine_kwargs["connect_args"]["write_timeout"] = config.database_timeout
        # InnoDB's default lock wait is 50 s: 5 s then 503, as on the other databases.
        engine_kwargs["connect_args"]["init_command"] = (
            f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}"
        )
    return dataset.connect(
        url, ensure_schema=False, engine_kwargs=engine_kwargs, on_connect_statements=statements
    )


class WriterTurns:
    """Writers to one SQLite file take turns on locks of their own before they reach SQLite:
    SQLite's busy handler makes a waiting writer sleep for growing intervals (1, 2, 5, ... 100 ms)
    instead of waking it when the lock is free, which under 8 concurrent publishers made the
    slowest 1% wait 100-200 ms. A thread lock queues the threads of one process; an exclusive
    flock on a file beside the database (flock and SQLite's own fcntl locks do not meet) queues
    the processes, and the kernel wakes the next one as soon as the lock is free. (Polling the
    flock every half millisecond instead left the p99 at 90 ms: the process that had just
    written kept winning.) After LOCK_WAIT_SECONDS without a turn: a 503, as a busy database gets."""

    def __init__(self, database_path: str) -> None:
        self._threads = threading.Lock()
        # Read-only is enough for flock, and lets any user that can read the folder take turns
        # (a `check` run as root creates the file too).
        self._file = os.open(database_path + "-writer", os.O_RDONLY | os.O_CREAT, 0o644)
        with contextlib.suppress(PermissionError):  # whatever the umask: it holds nothing secret
            os.fchmod(self._file, 0o644)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if not self._threads.acquire(timeout=LOCK_WAIT_SECONDS):
            raise StoreUnavailable(_BUSY) from TimeoutError(_WAITED.format("this process's"))
        handed_over = False
        try:
            if not self._lock_file():
                handed_over = True  # the late waiter gives both locks back when it gets its turn
                raise StoreUnavailable(_BUSY) from TimeoutError(_WAITED.format("another process's"))
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            if not handed_over:
                self._threads.release()

    def _lock_file(self) -> bool:
        """Take the file lock, waiting in the kernel for LOCK_WAIT_SECONDS at most. flock has no
        timeout: a waiter thread blocks on it, and if it is too late, gives the turn back."""
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        granted, guard, late = threading.Event(), threading.Lock(), [False]

        def wait() -> None:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            with guard:
                if late[0]:
                    fcntl.flock(self._file, fcntl.LOCK_UN)
                    self._threads.release()
                else:
                    granted.set()

        threading.Thread(target=wait, daemon=True).start()
        if granted.wait(LOCK_WAIT_SECONDS):
            return True
        with guard:
            late[0] = not granted.is_set()
        return not late[0]

    def close(self) -> None:
        os.close(self._file)


_BUSY = "the database is busy with other publishers; try again shortly"
# For the log (the error's cause): why a publisher got a 503 without reaching the database.
_WAITED = f"waited {LOCK_WAIT_SECONDS} s for a turn to write while {{}} writer held it"


def writer_turns(config: Config) -> WriterTurns | None:
    """Turns for the writers of a SQLite file; None for a database server, which wakes a
    waiting writer itself when the lock it waits for is free."""
    path = sqlite_path(config.database_url)
    return WriterTurns(path) if path is not None else None


def _check_sqlite_folder(url: str, create: bool) -> None:
    """The folder of a SQLite file must exist and be writable (SQLite writes -wal and -shm
    files beside it). Only the default location is created: a typo in a configured path should
    be an error, not a new folder somewhere."""
    path = sqlite_path(url)
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    user = pwd.getpwuid(os.geteuid()).pw_name
    if create:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                "database_url",
                f"cannot create the default folder {folder!r} "
                f"({error.strerror}); set ATOMMQ_DATABASE_URL to a file in a folder that "
                f"user {user} can write, outside the web root",
            ) from None
    if not os.path.isdir(folder):
        raise ConfigError(
            "database_url", f"folder {folder!r} of {url!r} does not exist; create it, writable by user {user}"
        )
    if not os.access(folder, os.W_OK):
        raise ConfigError(
            "database_url",
            f"user {user} cannot write in folder {folder!r}, where "
            "SQLite keeps the database and its journal; give that user write access",
        )


def meaning(error: sa.exc.DBAPIError | sa.exc.TimeoutError, dialect: str) -> StoreUnavailable | None:
    """What a driver's error means to a client: a conflict that running the transaction again
    resolves, a passing condition worth a retry later (503), or None: a defect or a setup
    problem, which is a 500 and goes to the log."""
    if _is_conflict(error):
        return StoreConflict("the database was busy with a conflicting update; try again")
    if _is_temporary(error, dialect):
        return StoreUnavailable("the database is busy or unreachable; try again shortly")
    return None


def _is_conflict(error: Exception) -> bool:
    """A deadlock or serialization failure: the database rolled the transaction back to let
    another one go on, so running it again at once is safe and usually succeeds. (A lock wait
    that timed out is not one: someone holds the lock for long, and the client should wait.)"""
    original = getattr(error, "orig", None)
    if getattr(original, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL
        return True
    arguments: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    return bool(arguments) and arguments[0] == 1213  # MariaDB/MySQL: deadlock


def _is_temporary(error: Exception, dialect: str) -> bool:
    """Worth a retry: a lock or busy timeout, a lost or refused connection. A SQLite file
    that cannot be opened or written is a setup problem, not a passing one."""
    if isinstance(error, sa.exc.TimeoutError):
        return True
    if not isinstance(error, sa.exc.OperationalError):
        return False
    if dialect == "sqlite":
        return any(word in str(error.orig) for word in ("locked", "busy"))
    return True
