"""The work of one request, in SQL, inside the transaction store.Store gives it: a message
appended, a page located and read, retention's steps, the feeds listed. No HTTP, no XML; the
tables are schema.py's, the statements built once per process statements.py's, named consumers
and whole feeds consumers.py's (a part of Session).

Within a feed, messages are numbered by a per-feed counter that publishers bump under the feed
row's lock, so the order of messages is their commit order and a polling consumer never skips one.
"""

import contextlib
import datetime
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa

from atommq.consumers import ConsumerAdmin
from atommq.errors import Gone, NotFound, UnknownCursor
from atommq.model import (
    Draft,
    Feed,
    Message,
    Page,
    atom_id,
    message_uuid,
    new_message_uuid,
    seq_in,
)
from atommq.retention import Limits
from atommq.schema import (
    DELETED_FEEDS,
    FEEDS,
    MESSAGE_COLUMNS,
    MESSAGES,
    RENDERINGS,
    TEXT_ENTRIES,
)
from atommq.statements import (
    ALL_FEEDS,
    APPEND,
    BUMP,
    BUMP_RETURNING,
    BY_KEY,
    COUNTER,
    FEED_AND_CURSOR,
    FEED_ROW,
    HELD,
    MESSAGE,
    NEWEST,
    OLDEST,
    PAGES,
    PRUNE_WINDOW,
    REMOVE,
    RETURNING_DIALECTS,
    SLOWEST,
    UNRENDERED,
    insert_feed_if_missing,
)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts: the feed, and the seq after which its messages come."""

    feed: Feed
    version: str  # opaque: changes whenever a page from here would change
    feed_pk: int
    after: int
    last_seq: int  # the feed's newest message: the page is empty while it is `after`
    cursor: str | None = None  # the message the page starts after (or at, `inclusive`)
    inclusive: bool = False


def _entry_bytes(stored: bytes | str | None) -> bytes | None:
    """A stored rendering (<entry>, JSON item) as bytes (kept as text where schema.TEXT_ENTRIES
    says)."""
    return stored.encode("utf-8") if isinstance(stored, str) else stored


def _message(feed: str, row: Any) -> Message:
    """A Message from a row that starts with MESSAGE_COLUMNS."""
    uuid, title, title_type, content, content_type, author, summary, summary_type, published, updated = row[
        : len(MESSAGE_COLUMNS)
    ]
    draft = Draft(title, title_type, content, content_type, author, summary, summary_type or "")
    return Message(atom_id(uuid), feed, draft, published, updated)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one step of retention found: the last seq it reached, how many messages go (or
    went), and whether more may follow."""

    upto: int
    count: int
    more: bool


class Session(ConsumerAdmin):
    """The work of one request, inside one transaction (named consumers and whole feeds:
    consumers.py's ConsumerAdmin)."""

    def __init__(self, connection: sa.Connection, dialect: str) -> None:
        self._conn = connection
        self._dialect = dialect
        self._text_entries = dialect in TEXT_ENTRIES

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the transaction that is undone alone if the block raises (on SQLite, where
        writes are committed in groups)."""
        if not self._conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
            # pysqlite begins a transaction at the first UPDATE; begun here, the savepoint is
            # not the transaction itself (whose RELEASE would commit it).
            self._conn.exec_driver_sql("BEGIN IMMEDIATE")
        self._conn.exec_driver_sql("SAVEPOINT atommq_write")
        try:
            yield
        except BaseException:
            self._conn.exec_driver_sql("ROLLBACK TO atommq_write")
            raise
        finally:
            self._conn.exec_driver_sql("RELEASE atommq_write")

    def _feed_row(self, name: str, cursor: str | None = None) -> Any:
        """The feed's pk, uuid, last_seq and updated; with a `cursor`, then the seq of the
        message it names (None: the feed has none such), in the same round trip."""
        if cursor is None:
            row = FEED_ROW.run(self._conn, {"feed_name": name}).first()
        else:
            values = {"feed_name": name, "message": message_uuid(cursor)}
            row = FEED_AND_CURSOR.run(self._conn, values).first()
        if row is None:
            deleted = sa.select(sa.func.max(DELETED_FEEDS.c.deleted)).where(DELETED_FEEDS.c.name == name)
            when = self._conn.execute(deleted).scalar()
            if when is not None:
                raise NotFound(
                    f"feed {name!r} was deleted on {when}; a new one is created by its next message"
                )
            raise NotFound(f"feed {name!r} does not exist; it is created by its first message")
        return row

    def append(
        self,
        name: str,
        draft: Draft,
        *,
        now: str,
        key: str | None = None,
        render: Callable[[Message], dict[str, bytes]] | None = None,
    ) -> tuple[Message, bytes | None, bool]:
        """Store a message at the end of a feed, published `now`, creating the feed if it is
        new, with `render(message)`: its renderings by their names in RENDERINGS (one missing,
        or no `render`: made on every read). With an idempotency `key` that the feed already
        has, store nothing and return that message. Returns the message, its stored <entry>,
        and whether it was already stored."""
        # The UPDATE comes first: it takes the feed row's write lock (SQLite: the database's),
        # so publishers to one feed are serialised and seq follows commit order. A retry with
        # the same key waits here for its first attempt to commit, then finds it below.
        bump = {"feed_name": name, "now": now}
        pk, feed_uuid, seq = self._bump(bump) or self._bump(bump, create=True)
        if key is not None:
            stored = self._conn.execute(BY_KEY, {"pk": pk, "key": key}).first()
            if stored is not None:
                self._undo_bump(pk)
                return _message(name, stored), _entry_bytes(stored.atom), True
        uuid = new_message_uuid(feed_uuid, seq)
        message = Message(atom_id(uuid), name, draft, now, now)
        rendered = {} if render is None else render(message)
        values = {
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
            **{
                form: (text.decode("utf-8") if self._text_entries else text)
                for form, text in rendered.items()
                if form in RENDERINGS
            },
        }
        values.update({form: None for form in RENDERINGS if form not in values})
        APPEND.run(self._conn, {"feed_name": name, **{"v_" + k: v for k, v in values.items()}})
        return message, rendered.get("atom"), False

    def _bump(self, bump: dict[str, str], create: bool = False) -> Any:
        """Take the feed's next seq (creating the feed first, with `create`): the feed's pk,
        uuid and new last_seq, or None when the feed does not exist. In one round trip where
        UPDATE ... RETURNING exists (SQLite, PostgreSQL), in two elsewhere (MariaDB)."""
        if create:
            new_feed = insert_feed_if_missing(
                self._dialect, bump["feed_name"], str(uuidlib.uuid4()), bump["now"]
            )
            self._conn.execute(new_feed)
        if self._dialect in RETURNING_DIALECTS:
            # All of it: a RETURNING statement left unfinished keeps its statement open.
            rows = BUMP_RETURNING.run(self._conn, bump).all()
            return rows[0] if rows else None
        if BUMP.run(self._conn, bump).rowcount == 0:
            return None
        return COUNTER.run(self._conn, {"feed_name": bump["feed_name"]}).first()

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

    def locate(self, name: str, cursor: str | None, inclusive: bool, last: int | None = None) -> Position:
        """The feed and the place a page starts: after (or at) the message `cursor`; or, with
        `last`, at its newest `last` messages (a feed's seqs have no holes: a seq is taken in
        the transaction that stores its message, and given back by a replay)."""
        row = self._feed_row(name, cursor)
        pk, uuid, last_seq, updated = row[:4]
        after = 0 if last is None else max(0, last_seq - last)
        if cursor is not None:
            seq = row[4]
            if seq is None:  # removed since (retention), or never the feed's
                seq = self._removed(name, pk, uuid, last_seq, cursor, inclusive)
            after = seq - 1 if inclusive else seq
        feed = Feed(name, atom_id(uuid), updated)
        # The feed uuid makes a version unique across databases: a reset store never matches.
        return Position(feed, f"{uuid}.{last_seq}.{after}", pk, after, last_seq, cursor, inclusive)

    def _removed(
        self, name: str, pk: int, feed_uuid: str, last_seq: int, cursor: str, inclusive: bool
    ) -> int:
        """The seq of `cursor`, a message the feed does not hold, when it had it and no message
        after it has gone since (the consumer missed nothing: its page follows). Gone if it
        named one the feed had (its uuid carries this feed's seq, model.seq_in, up to the newest)
        and messages were missed: seqs have no holes and retention removes the oldest, so those
        before the oldest still held. Else UnknownCursor (or Gone, for a deleted feed's)."""
        claimed = seq_in(message_uuid(cursor), feed_uuid)
        if claimed is None or claimed > last_seq:
            self._unknown(name, cursor)
        oldest = self._conn.execute(OLDEST, {"pk": pk}).scalar()
        held_from = last_seq + 1 if oldest is None else oldest
        missed = max(0, held_from - claimed - (0 if inclusive else 1))
        if missed == 0:
            return claimed
        raise _missed(name, cursor, inclusive, missed)

    def _unknown(self, name: str, cursor: str) -> NoReturn:
        """Raise for a cursor the feed never had: Gone if it was a message of a feed of this
        name since deleted (DELETE /feed=NAME), else UnknownCursor."""
        deleted = sa.select(DELETED_FEEDS.c.uuid, DELETED_FEEDS.c.last_seq, DELETED_FEEDS.c.deleted)
        for feed_uuid, last_seq, when in self._conn.execute(deleted.where(DELETED_FEEDS.c.name == name)):
            if seq_in(message_uuid(cursor), feed_uuid) is not None:
                raise Gone(
                    f"message {cursor!r} was in the feed {name!r} that was deleted on {when} (with its "
                    f"{last_seq} messages); the feed of that name now is a new one: read it from its start"
                )
        shown = cursor if len(cursor) <= 80 else cursor[:80] + "..."
        raise UnknownCursor(f"feed {name!r} has no message with id {shown!r}")

    def read(self, position: Position, limit: int, form: str = "atom") -> Page:
        """Up to `limit` messages from `position`, oldest first: their stored rendering `form`
        (a name in RENDERINGS), or the message itself where it was stored without it."""
        page = {"pk": position.feed_pk, "after": position.after, "most": limit + 1}
        found = PAGES[form].run(self._conn, page).all()
        if position.cursor is not None and found and found[0][0] != position.after + 1:
            # Seqs have no holes: retention removed the messages after the cursor since locate
            # saw it (each statement sees what is committed when it runs: database.py).
            missed = found[0][0] - position.after - 1
            raise _missed(position.feed.name, position.cursor, position.inclusive, missed)
        rows = found[:limit]
        if self._text_entries:
            rows = [(seq, _entry_bytes(stored)) for seq, stored in rows]
        entries: list[bytes | Message] = [stored for _, stored in rows]
        unrendered = [seq for seq, stored in rows if stored is None]
        if unrendered:
            missing = {"pk": position.feed_pk, "seqs": unrendered}
            found_messages = self._conn.execute(UNRENDERED, missing)
            messages = {row[0]: _message(position.feed.name, row[1:]) for row in found_messages}
            if len(messages) < len(unrendered):  # retention removed some since the page was read:
                return self.read(position, limit, form)  # again (for a cursor, the 410 above)
            entries = [messages[seq] if stored is None else stored for seq, stored in rows]
        return Page(position.feed, entries, len(found) > limit, position.version)

    def message(self, name: str, message_id: str, form: str = "atom") -> tuple[Message, bytes | None]:
        """A message, and its stored rendering `form` (None: stored without it)."""
        row = MESSAGE.run(self._conn, {"feed_name": name, "message": message_uuid(message_id)}).first()
        if row is None:
            self._feed_row(name)  # which is missing: the feed, or the message
            raise NotFound(f"feed {name!r} has no message with id {message_id!r}")
        return _message(name, row), _entry_bytes(row[len(MESSAGE_COLUMNS) + list(RENDERINGS).index(form)])

    def prune(
        self, name: str, limits: Limits, now: datetime.datetime, after: int, most: int, remove: bool
    ) -> Pruned:
        """Weigh the feed's oldest messages after seq `after`, `most` at most, against `limits`
        at time `now`, and (with `remove`) delete those that go: a run from the oldest that
        stops at the first message kept, so that a message the rules keep is never removed,
        even one stored out of time order (clocks of two web servers)."""
        row = FEED_ROW.run(self._conn, {"feed_name": name}).first()
        if row is None:
            return Pruned(after, 0, False)
        pk, last_seq = row[0], row[2]
        by_count = last_seq - limits.max_messages if limits.max_messages is not None else 0
        by_age = _before(now, limits.max_age) if limits.max_age is not None else None
        window = PRUNE_WINDOW.run(self._conn, {"pk": pk, "after": after, "most": most}).all()
        # keep unread: what the slowest named consumer has not processed is kept up to the hard
        # limits (past them it goes, and that consumer's cursor gets its 410).
        slowest = self._conn.execute(SLOWEST, {"pk": pk}).scalar() if limits.keeps_unread else None
        hard_count = last_seq - limits.unread_messages if limits.unread_messages is not None else -1
        hard_age = _before(now, limits.unread_age) if limits.unread_age is not None else ""
        upto, count = after, 0
        for seq, published in window:
            if seq > by_count and (by_age is None or published >= by_age):
                break
            if slowest is not None and seq > slowest and seq > hard_count and published >= hard_age:
                break
            upto, count = seq, count + 1
        if remove and count:
            REMOVE.run(self._conn, {"pk": pk, "upto": upto})
        return Pruned(upto, count, count == len(window) == most)

    def give_back_space(self) -> int | None:
        """SQLite: free the file's free pages (Store.give_back_space); the bytes, or None."""
        run = self._conn.exec_driver_sql
        if run("PRAGMA auto_vacuum").scalar() != 2:  # 2: INCREMENTAL
            return None
        pages, size = run("PRAGMA freelist_count").scalar() or 0, run("PRAGMA page_size").scalar() or 0
        # pysqlite runs a statement that returns no rows one step only, and one step of
        # incremental_vacuum frees one page.
        for _ in range(pages):
            run("PRAGMA incremental_vacuum(1)")
        return int(pages) * int(size)

    def newest(self, names: list[str]) -> dict[str, int]:
        """The seq of each named feed's newest message (a feed that does not exist: absent)."""
        return dict(self._conn.execute(NEWEST, {"names": names}).all())

    def feeds(self) -> list[Feed]:
        return [Feed(name, atom_id(uuid), updated) for name, uuid, updated in ALL_FEEDS.run(self._conn, {})]

    def held(self) -> dict[str, int]:
        """How many messages each feed holds now."""
        rows = self._conn.execute(HELD).all()
        return {name: 0 if oldest is None else last_seq - oldest + 1 for name, last_seq, oldest in rows}


def _missed(name: str, cursor: str, inclusive: bool, missed: int) -> Gone:
    """The 410 of a cursor after (or at) which retention removed `missed` messages unread."""
    plural = "" if missed == 1 else "s"
    which = f"{missed} message{plural} from it on" if inclusive else f"{missed} message{plural} after it"
    return Gone(
        f"feed {name!r} no longer holds message {cursor!r}: messages were removed, and {which} "
        "went with them unread; read on from the oldest message kept (the Link header)"
    )


def _before(now: datetime.datetime, seconds: int) -> str:
    """The time `seconds` before `now`, as messages' `published` is stored (compared as text)."""
    return (now - datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
