"""The server's own commands on its database, for its administrator (and cron): `atommq prune`,
`atommq feeds`, `atommq feeds delete NAME`. They read the settings as the web server does and
talk to the database directly, not over HTTP: they need no login, and they see every feed.

The store is imported when a command runs, not with this module: the client verbs beside
these in cli.py stay free of dataset and SQLAlchemy.
"""

import datetime
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from atommq import config
from atommq.html import age
from atommq.jsonfeed import consumer_object

if TYPE_CHECKING:
    from atommq.store import Store


@contextmanager
def _store(settings: config.Config) -> Iterator["Store"]:
    from atommq.app import open_store

    store = open_store(settings)
    try:
        yield store
    finally:
        store.close()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def prune(dry_run: bool) -> int:
    """Remove what the [retention] rules no longer keep, feed by feed, saying how much."""
    from atommq.retention import limits_for

    settings = config.load()
    if not settings.retention:
        print("no [retention] rules in the settings (ATOMMQ_CONFIG): every message is kept")
        return 0
    verb = "would remove" if dry_run else "removed"
    with _store(settings) as store:
        with store.transaction() as session:
            feeds = [feed.name for feed in session.feeds()]
        now = _now()
        total = 0
        for name in feeds:
            limits = limits_for(settings.retention, name)
            if limits is None:
                continue
            removed = store.prune(name, limits, now, dry_run=dry_run)
            total += removed
            if removed:
                print(f"{name}: {verb} {removed} (keeps {limits})")
        print(f"{verb} {total} message{'' if total == 1 else 's'} in all")
        if not dry_run and store.dialect == "sqlite":
            freed = store.give_back_space()
            if freed is None:
                print(
                    "the SQLite file keeps its size (its free pages hold new messages): it was made "
                    "before AtomMQ 0.9; to let prune shrink it, once, with AtomMQ stopped: "
                    "sqlite3 FILE 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'"
                )
            elif freed:
                print(f"gave {_size(freed)} back to the file system")
    return 0


def feeds(as_json: bool) -> int:
    """Each feed: how many messages it holds, its oldest and newest, its size; then each named
    consumer, how many messages and how long it is behind, and what it missed."""
    with _store(config.load()) as store, store.transaction() as session:
        stats = session.feed_stats()
        consumers = session.consumers(_now())
    if as_json:
        by_feed: dict[str, list[dict[str, object]]] = {}
        for c in consumers:
            by_feed.setdefault(c.feed, []).append(consumer_object(c))
        listed = [
            {
                "name": s.name,
                "messages": s.messages,
                "oldest": s.oldest,
                "newest": s.newest,
                "size": s.size,
                "consumers": by_feed.get(s.name, []),
            }
            for s in stats
        ]
        print(json.dumps({"feeds": listed}, ensure_ascii=False))
        return 0
    if not stats:
        print("no feeds yet: a feed is made by its first message")
        return 0
    rows = [("FEED", "MESSAGES", "OLDEST", "NEWEST", "SIZE")]
    rows += [(s.name, str(s.messages), _time(s.oldest), _time(s.newest), _size(s.size)) for s in stats]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (
            cell.rjust(w) if i == 1 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        print("  ".join(cells).rstrip())
        for c in (c for c in consumers if c.feed == row[0]) if row is not rows[0] else ():
            line = f"  consumer {c.name}: {c.behind} behind"
            if c.behind_seconds > 0:
                line += f", the oldest unread {age(c.behind_seconds)} old"
            if c.missed:
                line += f"; missed {c.missed} (removed before it read them)"
            print(line)
    return 0


def delete_feed(name: str, yes: bool) -> int:
    """Delete a feed with its messages and consumers, after asking at a terminal (or --yes)."""
    if not yes:
        if not sys.stdin.isatty():
            print(
                f"atommq: not deleting feed {name!r} without --yes (no terminal to ask at)", file=sys.stderr
            )
            return 2
        if input(f"Delete feed {name!r} with all its messages and consumers? [y/N] ").strip().lower() not in (
            "y",
            "yes",
        ):
            print("nothing deleted")
            return 1
    from atommq.errors import NotFound

    with _store(config.load()) as store:
        try:
            removed = store.delete_feed(name, _now())
        except NotFound:
            print(f"atommq: there is no feed {name!r}", file=sys.stderr)
            return 1
    print(f"feed {name!r} deleted, with its {removed} message{'' if removed == 1 else 's'}")
    return 0


def _time(stamp: str | None) -> str:
    """A stored RFC 3339 time, to the second, for a terminal."""
    return "-" if stamp is None else stamp[:19].replace("T", " ")


def _size(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
