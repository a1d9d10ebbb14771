#!/usr/bin/env python3
"""Retention through lighttpd as deploy/lighttpd.conf runs it (FastCGI, 2 processes), on SQLite:
1. publish latency to a feed that a rule keeps at 1,000 messages (pruned in passing: one publish
   in 64 prunes, after its answer) against a feed without a rule, 1 publisher and 8, in turns;
2. the database file's size while N messages are published to the kept feed (8 publishers over
   two lighttpd): held flat by the rule.

    python3 bench/retention.py [--rounds N] [--messages N]

Needs root and Debian's lighttpd, as bench/lighttpd.py does.
"""

import argparse
import os
import shutil
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import lighttpd  # noqa: E402

import webservers  # noqa: E402

RULES = "[retention]\nkept = 1000 messages\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="turns of each latency measurement")
    parser.add_argument("--messages", type=int, default=200_000, help="messages published for the size part")
    args = parser.parse_args()
    python, app, shared = lighttpd.deployed("bench/retention.py", "amqbench")
    database = shared / "atommq.db"
    settings = {"ATOMMQ_DATABASE_URL": f"sqlite:///{database}"}
    servers = [webservers.WebServer("lighttpd-fastcgi", python, app, settings, RULES) for _ in range(2)]
    ports = [server.port for server in servers]
    try:
        lighttpd.contention(ports, 8, 150, "/atommq/feed=kept")  # over its limit: pruning from now on
        print("Publish latency through lighttpd, SQLite; 'kept' has a rule of 1000 messages, 'all' none:")
        for publishers in (1, 8):
            for _ in range(args.rounds):
                for feed in ("all", "kept"):
                    over = ports[: 1 if publishers == 1 else 2]
                    rate, times = lighttpd.contention(
                        over, publishers, 2000 // publishers, f"/atommq/feed={feed}"
                    )
                    print(
                        f"  {publishers} publisher{'s' * (publishers > 1)}, feed {feed:4}: {rate:6.0f} /s, "
                        f"p50 {lighttpd.percentile_ms(times, 0.5):6.2f} ms, p99 {lighttpd.percentile_ms(times, 0.99):6.2f} ms",
                        flush=True,
                    )
        print(f"The database file while {args.messages} messages are published to 'kept':")
        step = max(1, args.messages // 10)
        for done in range(step, args.messages + 1, step):
            lighttpd.contention(ports, 8, step // 8, "/atommq/feed=kept")
            size = sum(os.path.getsize(p) for p in shared.glob("atommq.db*"))
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
                held = db.execute(
                    "SELECT COUNT(*) FROM atommq_messages m JOIN atommq_feeds f ON f.pk = m.feed_pk "
                    "WHERE f.name = 'kept'"
                ).fetchone()[0]
            print(
                f"  after {done:8}: {size / 1e6:7.2f} MB (file and WAL), 'kept' holds {held}",
                flush=True,
            )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(app, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    main()
