"""The tables, and their creation on first use: what AtomMQ stores, in SQLAlchemy Core.

No queries (session.py's, consumers.py's and statements.py's), no connections of its own (database.py's).
"""

import threading
import time

import sqlalchemy as sa

from atommq.model import (
    FEED_NAME_MAX_LENGTH,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    MEDIA_TYPE_MAX_LENGTH,
    TEXT_TYPE_MAX_LENGTH,
    UUID_LENGTH,
)

# MySQL/MariaDB make TEXT(n) the smallest type that holds n bytes: LONGTEXT here, as TEXT
# (64 KiB) is too small for a message. Named by length, so the mysql dialect is not imported.
_BIG_TEXT = sa.Text().with_variant(sa.Text(2**32 - 1), "mysql", "mariadb")
# A stored <entry>: bytes, LONGBLOB on MariaDB; but TEXT on PostgreSQL, where psycopg fetches
# bytea as hex text (a 1000-message page: 4.5 ms of fetching as bytea, 2.3 ms as text).
_ENTRY = (
    sa.LargeBinary()
    .with_variant(sa.LargeBinary(2**32 - 1), "mysql", "mariadb")
    .with_variant(sa.Text(), "postgresql")
)
TEXT_ENTRIES = ("postgresql",)  # the dialects where it is text


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
    # The message's <entry> as it stands in a feed (atom.entry_xml), made once when it is
    # published, so that a page read joins stored bytes instead of rendering every message for
    # every reader. UTF-8 bytes, as they are sent: a read neither decodes nor encodes them
    # (but on PostgreSQL, text: see _ENTRY).
    # NULL for messages stored before AtomMQ kept it: those are rendered on read.
    sa.Column("atom", _ENTRY, nullable=True),
    # The same for JSON: the message as a JSON Feed item without its "url" (jsonfeed.stored_item),
    # which depends on the address it is asked at and is put in on read. NULL for messages
    # stored before AtomMQ kept it: rendered on read.
    sa.Column("json", _ENTRY, nullable=True),
    # The same for a browser's feed page: the message as an <article> (html.stored_article),
    # its links relative to the feed. NULL for messages stored before: rendered on read.
    sa.Column("html", _ENTRY, nullable=True),
    sa.UniqueConstraint("feed_pk", "idempotency_key"),
)
# Named consumers (PUT /feed=NAME/consumer=CNAME): the last message each processed, by its seq
# and uuid (the message itself may be gone since: retention), and when it said so.
CONSUMERS = sa.Table(
    "atommq_consumers",
    METADATA,
    sa.Column("feed_pk", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", _exact(FEED_NAME_MAX_LENGTH), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("uuid", _exact(UUID_LENGTH), nullable=False),
    sa.Column("updated", sa.String(32), nullable=False),
)
# Feeds deleted (DELETE /feed=NAME): their uuid, so that a cursor from before, given to a new
# feed of the same name, is told it is gone (410) and not that it was never known (400).
DELETED_FEEDS = sa.Table(
    "atommq_deleted_feeds",
    METADATA,
    sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", _exact(FEED_NAME_MAX_LENGTH), nullable=False),  # few rows: no index
    sa.Column("uuid", _exact(UUID_LENGTH), nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.String(32), nullable=False),
)
MESSAGE_COLUMNS = (
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
ADDED_COLUMNS = (
    MESSAGES.c.summary,
    MESSAGES.c.summary_type,
    MESSAGES.c.atom,
    MESSAGES.c.json,
    MESSAGES.c.html,
)
# The stored renderings of a message, by the name a reader asks for them with.
RENDERINGS = {"atom": MESSAGES.c.atom, "json": MESSAGES.c.json, "html": MESSAGES.c.html}


class Schema:
    """Creates the tables once per process, on first use; safe when several processes start at
    once (each CREATE TABLE is atomic, and a loser of the race tries again)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._ready = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self._ready:
            return
        with self._lock:
            for attempt in range(5):
                # Outside the retry: a server that is down or silent fails here, once.
                with self._engine.connect() as connection:
                    try:
                        _new_sqlite_file(connection)
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
            self._ready = True


def _new_sqlite_file(connection: sa.Connection) -> None:
    """A SQLite file AtomMQ is about to make its tables in gets auto_vacuum=INCREMENTAL, so that
    `atommq prune` can give the pages retention freed back to the file system
    (Store.give_back_space). It takes only before the first table, and after WAL (which
    dataset sets on connect) only through a VACUUM: instant in an empty file. Set here, once,
    not on every connection: there the pragma waits for the write lock a publisher holds."""
    if connection.dialect.name != "sqlite" or sa.inspect(connection).get_table_names():
        return
    connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
    connection.exec_driver_sql("VACUUM")


def _add_missing_columns(connection: sa.Connection) -> None:
    """Bring a table made by an earlier AtomMQ up to date: nullable columns, added in place
    (every database here can ADD COLUMN without rewriting its rows' existing data)."""
    present = {column["name"] for column in sa.inspect(connection).get_columns(MESSAGES.name)}
    for column in ADDED_COLUMNS:
        if column.name not in present:
            kind = column.type.compile(dialect=connection.dialect)
            connection.execute(sa.text(f"ALTER TABLE {MESSAGES.name} ADD COLUMN {column.name} {kind}"))
