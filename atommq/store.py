"""Plain objects <-> SQL, through dataset (SQLAlchemy underneath). No HTTP, no XML.

Every request's work runs in one transaction (`Store.transaction`), reads included. Within a
feed, messages are numbered by a per-feed counter that publishers bump under the feed row's
lock, so the order of messages is their commit order and a polling consumer never skips one.
"""

import contextlib
import os
import pwd
import threading
import time
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dataset
import sqlalchemy as sa

from atommq.errors import ConfigError, NotFound, StoreConflict, StoreUnavailable, UnknownCursor
from atommq.model import (
    FEED_NAME_MAX_LENGTH,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    MEDIA_TYPE_MAX_LENGTH,
    TEXT_TYPE_MAX_LENGTH,
    UUID_LENGTH,
    Draft,
    Feed,
    Message,
    Page,
    atom_id,
    message_uuid,
)

# How long a writer waits for another's lock before giving up with a 503 (SQLite's busy
# timeout, PostgreSQL's lock_timeout, InnoDB's lock wait timeout).
LOCK_WAIT_SECONDS = 5
# How long a MariaDB/MySQL server may stay silent (no greeting, no answer) before a 503.
SILENT_SERVER_SECONDS = 30
# MySQL/MariaDB make TEXT(n) the smallest type that holds n bytes: LONGTEXT here, as TEXT
# (64 KiB) is too small for a message. Named by length, so the mysql dialect is not imported.
_BIG_TEXT = sa.Text().with_variant(sa.Text(2**32 - 1), "mysql", "mariadb")


def _exact(length: int) -> sa.String:
    """A string compared byte for byte: MariaDB's default collation would make `widgets` and
    `Widgets` one feed, and Idempotency-Keys `Backup-1` and `backup-1` one message."""
    return sa.String(length).with_variant(sa.String(length, collation="utf8mb4_bin"), "mysql", "mariadb")


METADATA = sa.MetaData()
FEEDS = sa.Table(
    "atommq_feeds",
    METADATA,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", _exact(FEED_NAME_MAX_LENGTH), nullable=False, unique=True),
    sa.Column("uuid", _exact(UUID_LENGTH), nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("updated", sa.String(32), nullable=False),
)
# The primary key (feed_pk, seq) is the index that keeps a page read O(page size). Constraints
# are declared inline so that each table is created by one atomic CREATE TABLE.
MESSAGES = sa.Table(
    "atommq_messages",
    METADATA,
    sa.Column("feed_pk", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("uuid", _exact(UUID_LENGTH), nullable=False, unique=True),
    sa.Column("title", _BIG_TEXT, nullable=False),
    sa.Column("title_type", sa.String(TEXT_TYPE_MAX_LENGTH), nullable=False),
    sa.Column("content", _BIG_TEXT, nullable=False),
    sa.Column("content_type", sa.String(MEDIA_TYPE_MAX_LENGTH), nullable=False),
    sa.Column("author", _BIG_TEXT, nullable=True),
    # The publisher's <summary> (NULL: none was sent) and its type: text, html or xhtml.
    sa.Column("summary", _BIG_TEXT, nullable=True),
    sa.Column("summary_type", sa.String(TEXT_TYPE_MAX_LENGTH), nullable=True),
    sa.Column("published", sa.String(32), nullable=False),
    sa.Column("updated", sa.String(32), nullable=False),
    # The publisher's Idempotency-Key, if it sent one: unique within the feed, so a retry finds
    # the message its first attempt stored (NULLs, messages without a key, never collide).
    sa.Column("idempotency_key", _exact(IDEMPOTENCY_KEY_MAX_LENGTH), nullable=True),
    sa.UniqueConstraint("feed_pk", "idempotency_key"),
)
_MESSAGE_COLUMNS = (
    MESSAGES.c.uuid,
    MESSAGES.c.title,
    MESSAGES.c.title_type,
    MESSAGES.c.content,
    MESSAGES.c.content_type,
    MESSAGES.c.author,
    MESSAGES.c.summary,
    MESSAGES.c.summary_type,
    MESSAGES.c.published,
    MESSAGES.c.updated,
)
# Columns added since the first release: a table created before them gets them on first use.
_ADDED_COLUMNS = (MESSAGES.c.summary, MESSAGES.c.summary_type)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts: the feed, and the seq after which its messages come."""

    feed: Feed
    version: str  # opaque: changes whenever a page from here would change
    feed_pk: int
    after: int


def _message(feed: str, row: Any) -> Message:
    uuid, title, title_type, content, content_type, author, summary, summary_type, published, updated = row
    draft = Draft(title, title_type, content, content_type, author, summary, summary_type or "")
    return Message(atom_id(uuid), feed, draft, published, updated)


class Session:
    """The work of one request, inside one transaction."""

    def __init__(self, connection: sa.Connection, dialect: str) -> None:
        self._conn = connection
        self._dialect = dialect

    def _feed_row(self, name: str) -> Any:
        query = sa.select(FEEDS.c.pk, FEEDS.c.uuid, FEEDS.c.last_seq, FEEDS.c.updated)
        row = self._conn.execute(query.where(FEEDS.c.name == name)).first()
        if row is None:
            raise NotFound(f"feed {name!r} does not exist; it is created by its first message")
        return row

    def append(self, name: str, draft: Draft, *, now: str, key: str | None = None) -> tuple[Message, bool]:
        """Store a message at the end of a feed, published `now`, creating the feed if it is
        new. With an idempotency `key` that the feed already has, store nothing and return that
        message; the bool says which happened (True: it was already stored)."""
        # The UPDATE comes first: it takes the feed row's write lock (SQLite: the database's),
        # so publishers to one feed are serialised and seq follows commit order. A retry with
        # the same key waits here for its first attempt to commit, then finds it below.
        bump = FEEDS.update().where(FEEDS.c.name == name).values(last_seq=FEEDS.c.last_seq + 1, updated=now)
        if self._conn.execute(bump).rowcount == 0:
            self._conn.execute(self._insert_feed_if_missing(name, str(uuidlib.uuid4()), now))
            self._conn.execute(bump)
        row = self._conn.execute(sa.select(FEEDS.c.pk, FEEDS.c.last_seq).where(FEEDS.c.name == name)).one()
        if key is not None:
            stored = self._conn.execute(
                sa.select(*_MESSAGE_COLUMNS).where(
                    MESSAGES.c.feed_pk == row.pk, MESSAGES.c.idempotency_key == key
                )
            ).first()
            if stored is not None:
                self._undo_bump(row.pk)
                return _message(name, stored), True
        uuid = str(uuidlib.uuid4())
        values = {
            "feed_pk": row.pk,
            "seq": row.last_seq,
            "uuid": uuid,
            "title": draft.title,
            "title_type": draft.title_type,
            "content": draft.content,
            "content_type": draft.content_type,
            "author": draft.author,
            "summary": draft.summary,
            "summary_type": draft.summary_type if draft.summary is not None else None,
            "published": now,
            "updated": now,
            "idempotency_key": key,
        }
        self._conn.execute(MESSAGES.insert().values(values))
        return Message(atom_id(uuid), name, draft, now, now), False

    def _undo_bump(self, feed_pk: int) -> None:
        """Give back the seq that a replayed publish took, and the feed's time: that of its
        newest message (there is one: the message replayed)."""
        newest = (
            sa.select(MESSAGES.c.updated)
            .where(MESSAGES.c.feed_pk == feed_pk)
            .order_by(MESSAGES.c.seq.desc())
            .limit(1)
            .scalar_subquery()
        )
        undo = FEEDS.update().where(FEEDS.c.pk == feed_pk)
        self._conn.execute(undo.values(last_seq=FEEDS.c.last_seq - 1, updated=newest))

    def _insert_feed_if_missing(self, name: str, feed_uuid: str, now: str) -> sa.Executable:
        # Concurrent first posts to a new feed: the loser's insert is ignored, never an error.
        values = {"name": name, "uuid": feed_uuid, "last_seq": 0, "updated": now}
        if self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(FEEDS).values(values).on_conflict_do_nothing()
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(FEEDS).values(values).on_conflict_do_nothing()
        if self._dialect in ("mysql", "mariadb"):
            return FEEDS.insert().prefix_with("IGNORE").values(values)
        return FEEDS.insert().values(values)

    def locate(self, name: str, cursor: str | None, inclusive: bool) -> Position:
        """The feed and the place a page starts: after (or at) the message `cursor`."""
        pk, uuid, last_seq, updated = self._feed_row(name)
        after = 0
        if cursor is not None:
            seq = self._conn.execute(
                sa.select(MESSAGES.c.seq).where(
                    MESSAGES.c.feed_pk == pk, MESSAGES.c.uuid == message_uuid(cursor)
                )
            ).scalar()
            if seq is None:
                shown = cursor if len(cursor) <= 80 else cursor[:80] + "..."
                raise UnknownCursor(f"feed {name!r} has no message with id {shown!r}")
            after = seq - 1 if inclusive else seq
        feed = Feed(name, atom_id(uuid), updated)
        # The feed uuid makes a version unique across databases: a reset store never matches.
        return Position(feed, f"{uuid}.{last_seq}.{after}", pk, after)

    def read(self, position: Position, limit: int) -> Page:
        """Up to `limit` messages from `position`, oldest first."""
        query = (
            sa.select(*_MESSAGE_COLUMNS)
            .where(MESSAGES.c.feed_pk == position.feed_pk, MESSAGES.c.seq > position.after)
            .order_by(MESSAGES.c.seq)
            .limit(limit + 1)
        )
        rows = self._conn.execute(query).all()
        name = position.feed.name
        messages = [_message(name, row) for row in rows[:limit]]
        return Page(position.feed, messages, len(rows) > limit, position.version)

    def message(self, name: str, message_id: str) -> Message:
        pk = self._feed_row(name).pk
        row = self._conn.execute(
            sa.select(*_MESSAGE_COLUMNS).where(
                MESSAGES.c.feed_pk == pk, MESSAGES.c.uuid == message_uuid(message_id)
            )
        ).first()
        if row is None:
            raise NotFound(f"feed {name!r} has no message with id {message_id!r}")
        return _message(name, row)

    def feeds(self) -> list[Feed]:
        query = sa.select(FEEDS.c.name, FEEDS.c.uuid, FEEDS.c.updated).order_by(FEEDS.c.name)
        return [Feed(name, atom_id(uuid), updated) for name, uuid, updated in self._conn.execute(query)]


def _add_missing_columns(connection: sa.Connection) -> None:
    """Bring a table made by an earlier AtomMQ up to date: nullable columns, added in place
    (every database here can ADD COLUMN without rewriting its rows' existing data)."""
    present = {column["name"] for column in sa.inspect(connection).get_columns(MESSAGES.name)}
    for column in _ADDED_COLUMNS:
        if column.name not in present:
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(sa.text(f"ALTER TABLE {MESSAGES.name} ADD COLUMN {column.name} {kind}"))


def _is_conflict(error: Exception) -> bool:
    """A deadlock or serialization failure: the database rolled the transaction back to let
    another one go on, so running it again at once is safe and usually succeeds. (A lock wait
    that timed out is not one: someone holds the lock for long, and the client should wait.)"""
    original = getattr(error, "orig", None)
    if getattr(original, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL
        return True
    arguments: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    return bool(arguments) and arguments[0] == 1213  # MariaDB/MySQL: deadlock


def _check_sqlite_folder(url: str, create: bool) -> None:
    """The folder of a SQLite file must exist and be writable (SQLite writes -wal and -shm
    files beside it). Only the default location is created: a typo in a configured path should
    be an error, not a new folder somewhere."""
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
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


class Store:
    """One per process. Thread-safe: dataset gives each thread its own connection."""

    def __init__(self, url: str, pool_size: int = 10, create_folder: bool = False) -> None:
        engine_kwargs: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 5}
        statements = []
        if url.startswith("sqlite"):
            _check_sqlite_folder(url, create_folder)
            # FULL makes every acknowledged message durable; WAL (dataset's default) lets
            # readers run beside the one writer; the busy timeout makes writers queue.
            statements = ["PRAGMA synchronous=FULL", f"PRAGMA busy_timeout={LOCK_WAIT_SECONDS * 1000}"]
        else:
            # A pooled connection may have been closed by the server since: test it first.
            engine_kwargs["pool_pre_ping"] = True
            # An unreachable host answers nothing: give up after 5 s (a 503), not the OS's minutes.
            engine_kwargs["connect_args"] = {"connect_timeout": 5}
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
            # sends its greeting would hold the request forever: no answer in 30 s is a 503.
            engine_kwargs["connect_args"]["read_timeout"] = SILENT_SERVER_SECONDS
            engine_kwargs["connect_args"]["write_timeout"] = SILENT_SERVER_SECONDS
            # InnoDB's default lock wait is 50 s: 5 s then 503, as on the other databases.
            engine_kwargs["connect_args"]["init_command"] = (
                f"SET SESSION innodb_lock_wait_timeout = {LOCK_WAIT_SECONDS}"
            )
        self._db = dataset.connect(
            url,
            ensure_schema=False,
            engine_kwargs=engine_kwargs,
            on_connect_statements=statements,
        )
        assert self._db.engine is not None
        self._engine: sa.Engine = self._db.engine
        self.dialect = self._engine.dialect.name
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def _ensure_schema(self) -> None:
        """Create the tables on first use; safe when several processes start at once."""
        if self._schema_ready:
            return
        with self._schema_lock:
            for attempt in range(5):
                # Outside the retry: a server that is down or silent fails here, once.
                with self._engine.connect() as connection:
                    try:
                        METADATA.create_all(connection, checkfirst=True)
                        _add_missing_columns(connection)
                        connection.commit()
                        break
                    except sa.exc.DBAPIError:
                        # Another process created a table (or added a column) between our
                        # check and our CREATE.
                        if attempt == 4:
                            raise
                time.sleep(0.05 * (attempt + 1))
            self._schema_ready = True

    @contextlib.contextmanager
    def transaction(self, commit: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends (rolled back instead with
        commit=False: a trial run), rolled back if the block raises."""
        try:
            self._ensure_schema()
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
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as error:
            # A failed statement or COMMIT can leave the driver connection unusable, and
            # dataset's rollback does not reach it: throw the connection away.
            self._discard_connection()
            if _is_conflict(error):
                raise StoreConflict("the database was busy with a conflicting update; try again") from error
            if self._is_temporary(error):
                raise StoreUnavailable("the database is busy or unreachable; try again shortly") from error
            raise

    def _is_temporary(self, error: Exception) -> bool:
        """Worth a retry: a lock or busy timeout, a lost or refused connection. A SQLite file
        that cannot be opened or written is a setup problem, not a passing one."""
        if isinstance(error, sa.exc.TimeoutError):
            return True
        if not isinstance(error, sa.exc.OperationalError):
            return False
        if self.dialect == "sqlite":
            return any(word in str(error.orig) for word in ("locked", "busy"))
        return True

    def _discard_connection(self) -> None:
        """Throw this thread's connection away, and dataset's record of its transaction. The
        one place that reaches into dataset's own state (its per-thread connections and
        transaction stack): after a failed COMMIT (SQLite's "database is locked") the driver
        connection refuses every later statement, dataset's rollback does not reach it, and
        dataset offers no way to drop it (a "failed" row was once committed with the next write)."""
        with self._db.lock:
            connection = self._db.connections.pop(threading.get_ident(), None)
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.invalidate()
                connection.close()
        if hasattr(self._db.local, "tx"):
            self._db.local.tx = []

    def close(self) -> None:
        self._db.close()
