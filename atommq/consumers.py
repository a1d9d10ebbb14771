"""Named consumers and whole feeds, in SQL (README: Consumers): where each consumer is and its
lag, a consumer moved only from where a request expects it (If-Match), a feed's size, a feed's
deletion with its consumers. A part of session.Session, which inherits it: the same connection
and transaction. No HTTP, no XML; the statements built once are statements.py's.
"""

import datetime
from typing import Any, NoReturn

import sqlalchemy as sa

from atommq.errors import NotFound, PreconditionFailed
from atommq.model import ANY, NEW, Consumer, FeedStats, atom_id, message_uuid, seq_in
from atommq.schema import CONSUMERS, DELETED_FEEDS, FEEDS, MESSAGES
from atommq.statements import ALL_CONSUMERS, FEED_ROW, RETURNING_DIALECTS, insert_if_missing


class ConsumerAdmin:
    """session.Session's named consumers and whole feeds; Session gives them its connection
    (_conn), its dialect and the two lookups below."""

    _conn: sa.Connection
    _dialect: str

    # session.Session's, shared with its reads: a feed's row (NotFound: no such feed), and the
    # error for a cursor the feed never had.
    def _feed_row(self, name: str, cursor: str | None = None) -> Any:
        raise NotImplementedError

    def _unknown(self, name: str, cursor: str) -> NoReturn:
        raise NotImplementedError

    def delete_feed(self, name: str, now: str) -> int:
        """Delete the feed, what messages it still has (store.Store.delete_feed removed the rest
        in batches) and its named consumers; remember its uuid (a cursor from it: 410). Returns
        how many messages went here. A publisher waiting for the feed's row makes a new feed."""
        row = FEED_ROW.run(self._conn, {"feed_name": name}).first()
        if row is None:
            raise NotFound(f"feed {name!r} does not exist")
        pk, feed_uuid, last_seq = row[0], row[1], row[2]
        # The feed's row first: its lock, so that no publish to it runs between the statements.
        self._conn.execute(FEEDS.delete().where(FEEDS.c.pk == pk))
        removed = self._conn.execute(MESSAGES.delete().where(MESSAGES.c.feed_pk == pk)).rowcount
        self._conn.execute(CONSUMERS.delete().where(CONSUMERS.c.feed_pk == pk))
        tombstone = {"name": name, "uuid": feed_uuid, "last_seq": last_seq, "deleted": now}
        self._conn.execute(DELETED_FEEDS.insert().values(tombstone))
        return int(removed)

    def consumers(
        self, now: datetime.datetime, feed: str | None = None, consumer: str | None = None
    ) -> list[Consumer]:
        """The named consumers (of `feed`; called `consumer`) with their lag at `now`."""
        query = ALL_CONSUMERS
        if feed is not None:
            query = query.where(FEEDS.c.name == feed)
        if consumer is not None:
            query = query.where(CONSUMERS.c.name == consumer)
        found = []
        for feed_name, name, uuid, updated, seq, last_seq, first_unread, oldest in self._conn.execute(query):
            held_from = last_seq + 1 if oldest is None else oldest
            age = 0.0
            if first_unread is not None:
                age = max(0.0, (now - datetime.datetime.fromisoformat(first_unread)).total_seconds())
            missed = max(0, min(held_from, last_seq + 1) - seq - 1)
            found.append(Consumer(feed_name, name, atom_id(uuid), updated, last_seq - seq, age, missed))
        return found

    def feed_stats(self) -> list[FeedStats]:
        """Every feed's size (this reads all its messages: for `atommq feeds`, not for requests)."""
        length = sa.func.octet_length if self._dialect == "postgresql" else sa.func.length
        m = MESSAGES.c
        size = sa.func.coalesce(
            sa.func.sum(
                length(m.content)
                + length(m.title)
                + sa.func.coalesce(length(m.atom), 0)
                + sa.func.coalesce(length(m.json), 0)
            ),
            0,
        )
        held = (
            sa.select(m.feed_pk, sa.func.min(m.seq).label("oldest"), size.label("size"))
            .group_by(m.feed_pk)
            .subquery()
        )
        oldest_published = (
            sa.select(m.published).where(m.feed_pk == FEEDS.c.pk, m.seq == held.c.oldest).scalar_subquery()
        )
        query = (
            sa.select(
                FEEDS.c.name, FEEDS.c.last_seq, FEEDS.c.updated, held.c.oldest, held.c.size, oldest_published
            )
            .outerjoin(held, held.c.feed_pk == FEEDS.c.pk)
            .order_by(FEEDS.c.name)
        )
        return [
            FeedStats(
                name, 0 if oldest is None else last_seq - oldest + 1, published, updated, int(size or 0)
            )
            for name, last_seq, updated, oldest, size, published in self._conn.execute(query)
        ]

    def consumer(self, feed: str, name: str, now: datetime.datetime) -> Consumer:
        found = self.consumers(now, feed, name)
        if not found:
            self._feed_row(feed)  # which is missing: the feed, or the consumer
            raise NotFound(f"feed {feed!r} has no consumer {name!r}; a PUT of a message id makes it")
        return found[0]

    def move_consumer(self, feed: str, name: str, cursor: str, now: str, expect: str | None) -> bool:
        """Set consumer `name` of `feed` at message `cursor` (one the feed has or had), making it
        if new. `expect` (inbound.precondition): None, any way; NEW, only if it is new; ANY,
        only if it exists; a uuid, only if it is at that message. Else PreconditionFailed:
        another consumer of that name moved it. True: made."""
        row = self._feed_row(feed, cursor)
        pk, feed_uuid, last_seq, held = row[0], row[1], row[2], row[4]
        uuid = message_uuid(cursor).lower()
        seq = held if held is not None else seq_in(uuid, feed_uuid)
        if seq is None or seq > last_seq:
            self._unknown(feed, cursor)
        values = {"seq": seq, "uuid": uuid, "updated": now}
        mine = (CONSUMERS.c.feed_pk == pk) & (CONSUMERS.c.name == name)
        if expect != NEW:
            update = CONSUMERS.update().where(mine)
            if expect not in (None, ANY):
                update = update.where(CONSUMERS.c.uuid == expect)
            if self._conn.execute(update.values(values)).rowcount == 1:
                return False
        if expect in (None, NEW):
            if self._inserted(CONSUMERS, {"feed_pk": pk, "name": name, **values}):
                return True
            if expect is None:  # made meanwhile by another request: moved now
                self._conn.execute(CONSUMERS.update().where(mine).values(values))
                return False
        now_at = self._conn.execute(sa.select(CONSUMERS.c.uuid).where(mine)).scalar()
        where = f"is at {atom_id(now_at)!r}" if now_at is not None else "does not exist"
        wanted = {NEW: "none yet", ANY: "one"}.get(str(expect), f"one at {atom_id(str(expect))!r}")
        raise PreconditionFailed(
            f"consumer {name!r} of feed {feed!r} {where}; this request expected {wanted}: "
            "another consumer of that name moved it"
        )

    def _inserted(self, table: sa.Table, values: dict[str, Any]) -> bool:
        """Insert a row unless its key is taken; whether it was. (An INSERT's rowcount is -1
        on PostgreSQL here: where there is RETURNING, a row returned tells.)"""
        insert = insert_if_missing(self._dialect, table, values)
        if self._dialect in RETURNING_DIALECTS:
            assert isinstance(insert, sa.Insert)
            return self._conn.execute(insert.returning(*table.primary_key.columns)).first() is not None
        return self._conn.execute(insert).rowcount == 1

    def remove_consumer(self, feed: str, name: str) -> None:
        pk = self._feed_row(feed)[0]
        removed = self._conn.execute(
            CONSUMERS.delete().where(CONSUMERS.c.feed_pk == pk, CONSUMERS.c.name == name)
        )
        if removed.rowcount == 0:
            raise NotFound(f"feed {feed!r} has no consumer {name!r}")
