#!/usr/bin/env python3
"""AtomMQ on each database: publish throughput with 1 and with 8 concurrent publishers, and the
cost of reading a page after a cursor in a small feed and in a large one, through the real
FastCGI script (one process, 8 threads) on SQLite, PostgreSQL and MariaDB.

    python3 bench/databases.py                    # 1,000 vs 100,000 messages; some minutes
    python3 bench/databases.py --large 1000000    # vs 1,000,000 (seeding takes a while)

The large feed is seeded by SQL in bulk (a benchmark of reads need not publish a million times);
the last 1,000 messages are published through AtomMQ, and the cursor is among them. Servers:
this machine's (tests/databases.py says where; ATOMMQ_TEST_POSTGRESQL/ATOMMQ_TEST_MARIADB).
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402

import databases  # noqa: E402
import fastcgi_client  # noqa: E402
from atommq.schema import FEEDS, MESSAGES  # noqa: E402
from benchmark import ENTRY, params  # noqa: E402

PAGE = 100  # messages read after the cursor


class Server:
    def __init__(self, url: str, work: Path) -> None:
        self.socket = str(work / "fcgi.sock")
        env = {**os.environ, "ATOMMQ_DATABASE_URL": url, "ATOMMQ_PAGE_SIZE": str(PAGE)}
        self.process = subprocess.Popen([str(ROOT / "cgi-bin" / "atommq.fcgi"), self.socket], env=env)
        while not os.path.exists(self.socket):
            time.sleep(0.02)

    def post(self, feed: str) -> str:
        out = fastcgi_client.request(self.socket, params("POST", f"/feed={feed}", body=ENTRY), ENTRY)[0]
        assert out.startswith(b"Status: 201"), out[:200]
        return out.split(b"<id>")[1].split(b"</id>")[0].decode()

    def get(self, feed: str, cursor: str) -> None:
        out = fastcgi_client.request(self.socket, params("GET", f"/feed={feed}", f"start_after={cursor}"))[0]
        assert out.startswith(b"Status: 200"), out[:200]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def throughput(server: Server, feeds: list[str], publishers: int, each: int) -> float:
    """Messages a second, `publishers` threads posting `each` messages, spread over `feeds`."""

    def work(feed: str) -> None:
        for _ in range(each):
            server.post(feed)

    threads = [threading.Thread(target=work, args=(feeds[n % len(feeds)],)) for n in range(publishers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return publishers * each / (time.perf_counter() - started)


def seed(url: str, feed: str, count: int) -> None:
    """`count` messages in bulk after the one message through which AtomMQ created the feed."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        pk = connection.execute(sa.select(FEEDS.c.pk).where(FEEDS.c.name == feed)).scalar_one()
        connection.execute(sa.update(FEEDS).where(FEEDS.c.pk == pk).values(last_seq=count + 1))
    batch = 10_000
    for start in range(2, count + 2, batch):
        rows = [
            {
                "feed_pk": pk,
                "seq": seq,
                "uuid": str(uuid.uuid4()),
                "title": "",
                "title_type": "",
                "content": "seeded",
                "content_type": "",
                "author": None,
                "published": "2026-01-01T00:00:00.000000Z",
                "updated": "2026-01-01T00:00:00.000000Z",
                "idempotency_key": None,
            }
            for seq in range(start, min(start + batch, count + 2))
        ]
        with engine.begin() as connection:
            connection.execute(MESSAGES.insert(), rows)
    engine.dispose()


def read_after_cursor(server: Server, feed: str) -> float:
    cursors = [server.post(feed) for _ in range(1000)]  # published through AtomMQ, at the end
    times = []
    for cursor in cursors[:-PAGE][-200:]:
        t0 = time.perf_counter()
        server.get(feed, cursor)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", type=int, default=100_000, help="messages in the large feed (100000)")
    parser.add_argument("--databases", default="sqlite,postgresql,mariadb", help="which, comma-separated")
    args = parser.parse_args()
    print(
        f"AtomMQ per database on {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for kind in args.databases.split(","):
        work = Path(tempfile.mkdtemp(prefix="amqdb"))
        database = None
        if kind == "sqlite":
            url = f"sqlite:///{work}/atommq.db"
        else:
            reason = databases.missing(kind)
            if reason:
                print(f"{kind}: skipped, {reason}")
                continue
            database = databases.Database(kind)
            url = database.url
        server = Server(url, work)
        try:
            one = throughput(server, ["one"], 1, 500)
            hot = throughput(server, ["hot"], 8, 125)
            spread = throughput(server, [f"feed{n}" for n in range(8)], 8, 125)
            small = read_after_cursor(server, "small")
            server.post("large")
            seed(url, "large", args.large)
            large = read_after_cursor(server, "large")
            print(
                f"{kind:<10} publish/s: 1 publisher {one:4.0f}, 8 on one feed {hot:4.0f}, "
                f"8 on 8 feeds {spread:4.0f}; {PAGE} messages after a cursor: {small:5.2f} ms "
                f"in a feed of 1,000, {large:5.2f} ms in one of {args.large + 1001:,}",
                flush=True,
            )
        finally:
            server.stop()
            if database is not None:
                database.drop()
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
