"""The statements session.py and consumers.py run that are built once per process (at
import), not per request: a request passes only its values, and those wrapped in Prepared are
compiled once per database (prepared.py). With them, the functions that build an INSERT whose
form depends on the dialect.

Building only: nothing here connects, runs a statement or reads its rows (store.py's), and a
statement made from one request's values is built where it runs. The tables are schema.py's.
No HTTP, no XML.
"""

from typing import Any

import sqlalchemy as sa

from atommq.prepared import Prepared
from atommq.schema import CONSUMERS, FEEDS, MESSAGE_COLUMNS, MESSAGES, RENDERINGS

# Bind names differ from column names, which SQLAlchemy keeps for the SET and VALUES clauses.
_B = sa.bindparam
FEED_ROW = Prepared(
    sa.select(FEEDS.c.pk, FEEDS.c.uuid, FEEDS.c.last_seq, FEEDS.c.updated).where(
        FEEDS.c.name == _B("feed_name")
    )
)
BUMP = Prepared(
    FEEDS.update()
    .where(FEEDS.c.name == _B("feed_name"))
    .values(last_seq=FEEDS.c.last_seq + 1, updated=_B("now"))
)
BUMP_RETURNING = Prepared(
    FEEDS.update()
    .where(FEEDS.c.name == _B("feed_name"))
    .values(last_seq=FEEDS.c.last_seq + 1, updated=_B("now"))
    .returning(FEEDS.c.pk, FEEDS.c.uuid, FEEDS.c.last_seq)
)
RETURNING_DIALECTS = ("sqlite", "postgresql")  # the dialects with UPDATE ... RETURNING
# The feed's row after its counter was bumped: the new message's seq, and what its uuid is made of.
COUNTER = Prepared(
    sa.select(FEEDS.c.pk, FEEDS.c.uuid, FEEDS.c.last_seq).where(FEEDS.c.name == _B("feed_name"))
)
BY_KEY = sa.select(*MESSAGE_COLUMNS, MESSAGES.c.atom).where(
    MESSAGES.c.feed_pk == _B("pk"), MESSAGES.c.idempotency_key == _B("key")
)
# The feed's row and, in the same round trip, the seq of the message a cursor names (NULL: none).
FEED_AND_CURSOR = Prepared(
    sa.select(
        FEEDS.c.pk,
        FEEDS.c.uuid,
        FEEDS.c.last_seq,
        FEEDS.c.updated,
        sa.select(MESSAGES.c.seq)
        .where(MESSAGES.c.feed_pk == FEEDS.c.pk, MESSAGES.c.uuid == _B("message"))
        .scalar_subquery(),
    ).where(FEEDS.c.name == _B("feed_name"))
)
# A message and its stored renderings (RENDERINGS' order), by feed name and uuid, in one round trip.
MESSAGE = Prepared(
    sa.select(*MESSAGE_COLUMNS, *RENDERINGS.values())
    .join(FEEDS, FEEDS.c.pk == MESSAGES.c.feed_pk)
    .where(FEEDS.c.name == _B("feed_name"), MESSAGES.c.uuid == _B("message"))
)
# A page of one stored rendering, by its name in RENDERINGS.
PAGES = {
    form: Prepared(
        sa.select(MESSAGES.c.seq, column)  # not uuid: a fifth of the time of a large page
        .where(MESSAGES.c.feed_pk == _B("pk"), MESSAGES.c.seq > _B("after"))
        .order_by(MESSAGES.c.seq)
        .limit(_B("most", type_=sa.Integer))
    )
    for form, column in RENDERINGS.items()
}
# The messages of a page that were stored without the rendering asked for, to be rendered.
UNRENDERED = sa.select(MESSAGES.c.seq, *MESSAGE_COLUMNS).where(
    MESSAGES.c.feed_pk == _B("pk"), MESSAGES.c.seq.in_(_B("seqs", expanding=True))
)
# The oldest messages after a seq, for retention to weigh (prune), and their removal.
PRUNE_WINDOW = Prepared(
    sa.select(MESSAGES.c.seq, MESSAGES.c.published)
    .where(MESSAGES.c.feed_pk == _B("pk"), MESSAGES.c.seq > _B("after"))
    .order_by(MESSAGES.c.seq)
    .limit(_B("most", type_=sa.Integer))
)
REMOVE = Prepared(MESSAGES.delete().where(MESSAGES.c.feed_pk == _B("pk"), MESSAGES.c.seq <= _B("upto")))
OLDEST = sa.select(sa.func.min(MESSAGES.c.seq)).where(MESSAGES.c.feed_pk == _B("pk"))
# The lowest position of the feed's named consumers: what retention's keep unread keeps after.
SLOWEST = sa.select(sa.func.min(CONSUMERS.c.seq)).where(CONSUMERS.c.feed_pk == _B("pk"))
# Named consumers with what their lag is made of: the feed's newest seq, the time of the oldest
# message each has not processed (NULL: none held), and the feed's oldest seq held.
_FIRST_UNREAD = (
    sa.select(MESSAGES.c.published)
    .where(MESSAGES.c.feed_pk == CONSUMERS.c.feed_pk, MESSAGES.c.seq > CONSUMERS.c.seq)
    .order_by(MESSAGES.c.seq)
    .limit(1)
    .scalar_subquery()
)
_OLDEST_HELD = sa.select(sa.func.min(MESSAGES.c.seq)).where(MESSAGES.c.feed_pk == CONSUMERS.c.feed_pk)
ALL_CONSUMERS = (
    sa.select(
        FEEDS.c.name,
        CONSUMERS.c.name,
        CONSUMERS.c.uuid,
        CONSUMERS.c.updated,
        CONSUMERS.c.seq,
        FEEDS.c.last_seq,
        _FIRST_UNREAD,
        _OLDEST_HELD.scalar_subquery(),
    )
    .join(FEEDS, FEEDS.c.pk == CONSUMERS.c.feed_pk)
    .order_by(FEEDS.c.name, CONSUMERS.c.name)
)
NEWEST = sa.select(FEEDS.c.name, FEEDS.c.last_seq).where(FEEDS.c.name.in_(_B("names", expanding=True)))
ALL_FEEDS = Prepared(sa.select(FEEDS.c.name, FEEDS.c.uuid, FEEDS.c.updated).order_by(FEEDS.c.name))
# How many messages each feed holds: a feed's seqs have no holes, and retention removes the
# oldest, so its newest seq less the oldest's, plus one (an index lookup each, not a count).
HELD = sa.select(
    FEEDS.c.name,
    FEEDS.c.last_seq,
    sa.select(sa.func.min(MESSAGES.c.seq)).where(MESSAGES.c.feed_pk == FEEDS.c.pk).scalar_subquery(),
)
# A message is inserted with the seq that the feed's counter was just bumped to, read in the
# INSERT itself (one round trip fewer than reading it first).
_GIVEN = [column for column in MESSAGES.c if column.name not in ("feed_pk", "seq")]
APPEND = Prepared(
    MESSAGES.insert().from_select(
        ["feed_pk", "seq", *[column.name for column in _GIVEN]],
        sa.select(FEEDS.c.pk, FEEDS.c.last_seq, *[_B("v_" + c.name, type_=c.type) for c in _GIVEN]).where(
            FEEDS.c.name == _B("feed_name")
        ),
    )
)


def insert_feed_if_missing(dialect: str, name: str, feed_uuid: str, now: str) -> sa.Executable:
    # Concurrent first posts to a new feed: the loser's insert is ignored, never an error.
    return insert_if_missing(dialect, FEEDS, {"name": name, "uuid": feed_uuid, "last_seq": 0, "updated": now})


def insert_if_missing(dialect: str, table: sa.Table, values: dict[str, Any]) -> sa.Executable:
    """An INSERT that does nothing (rowcount 0) where the row's key or name is taken."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).values(values).on_conflict_do_nothing()
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).values(values).on_conflict_do_nothing()
    if dialect in ("mysql", "mariadb"):
        return table.insert().prefix_with("IGNORE").values(values)
    return table.insert().values(values)
