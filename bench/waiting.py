"""Long polling through lighttpd as deploy/lighttpd.conf runs it (FastCGI, 2 processes):

1. publish to delivery: a consumer waits (?wait=20) after the last message; a publisher posts;
   the time from the POST's start to the consumer's answer, median and p99, against a consumer
   that polls once a second;
2. what 100 waiting requests cost while nothing is published: the FastCGI processes' CPU, and on
   PostgreSQL the transactions per second they add (pg_stat_database);
3. publish latency (1 publisher) with no waiters, with 100 requests waiting on another feed,
   and with 100 consumers following the feed that is published to; and a plain GET meanwhile.

    python3 bench/waiting.py [--rounds N] [--database-url URL]

Needs root and Debian's lighttpd, as bench/lighttpd.py does.
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import lighttpd  # noqa: E402

import webservers  # noqa: E402

FEED = "/atommq/feed="


def last_id(client: lighttpd.Client, feed: str) -> str:
    status, _, body = client.request("POST", FEED + feed, lighttpd.ENTRY, lighttpd.HEADERS)
    assert status == 201, status
    return body.split(b"<id>")[1].split(b"</id>")[0].decode()


def ids(body: bytes) -> list[str]:
    return [part.split(b"</id>")[0].decode() for part in body.split(b"<entry><id>")[1:]]


def ms(values: list[float], share: float) -> str:
    return f"{lighttpd.percentile_ms(values, share):7.1f} ms"


def delivery(port: int, rounds: int, poll_seconds: float | None) -> list[float]:
    """Seconds from a publish's start to a consumer's answer carrying it: the consumer waits
    (poll_seconds None) or polls every poll_seconds."""
    publisher = lighttpd.Client(port)
    cursor = last_id(publisher, "delivery")
    times: list[float] = []
    for _ in range(rounds):
        answered: list[float] = []

        def consume(after: str, answered: list[float] = answered) -> None:
            consumer = lighttpd.Client(port)
            while True:
                if poll_seconds is None:
                    body = consumer.request("GET", f"{FEED}delivery?start_after={after}&wait=20")[2]
                else:
                    body = consumer.request("GET", f"{FEED}delivery?start_after={after}")[2]
                if ids(body):
                    answered.append(time.perf_counter())
                    return
                if poll_seconds is not None:
                    time.sleep(poll_seconds)

        thread = threading.Thread(target=consume, args=(cursor,))
        thread.start()
        # Not a whole number of the watcher's polls (25 ms) after the wait began: a fixed 0.2 s
        # put every publish just after a poll, and every delivery at the next (24 ms).
        time.sleep(
            random.uniform(0.2, 0.25) if poll_seconds is None else poll_seconds * (0.5 + len(times) % 10 / 10)
        )
        started = time.perf_counter()
        cursor = last_id(publisher, "delivery")
        thread.join(timeout=60)
        times.append(answered[0] - started)
    return times


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def fastcgi_pids(server: webservers.WebServer) -> list[int]:
    """The FastCGI processes that the server's lighttpd spawned."""
    lighttpd_pid = server.processes[0].pid
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == lighttpd_pid:
            found.append(int(pid))
    return found


class Waiters:
    """`count` requests that wait on `feed` after its last message, each asking again when
    answered (following the feed), until stopped."""

    def __init__(self, port: int, feed: str, count: int) -> None:
        self.stopping = False
        self.answers = 0
        start = last_id(lighttpd.Client(port), feed)
        self.threads = [threading.Thread(target=self._wait, args=(port, feed, start)) for _ in range(count)]
        for thread in self.threads:
            thread.start()
        time.sleep(2)  # all parked

    def _wait(self, port: int, feed: str, cursor: str) -> None:
        client = lighttpd.Client(port)
        while not self.stopping:
            _, _, body = client.request("GET", f"{FEED}{feed}?start_after={cursor}&wait=5")
            found = ids(body)
            cursor = found[-1] if found else cursor
            self.answers += 1

    def stop(self) -> None:
        self.stopping = True
        for thread in self.threads:
            thread.join(timeout=30)


def publishes(port: int, count: int) -> tuple[list[float], list[float]]:
    """`count` publishes one after another, and as many plain GETs of another feed beside them."""
    publisher, reader = lighttpd.Client(port), lighttpd.Client(port)
    posted, read = [], []
    for _ in range(count):
        started = time.perf_counter()
        assert publisher.request("POST", FEED + "load", lighttpd.ENTRY, lighttpd.HEADERS)[0] == 201
        posted.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert reader.request("GET", FEED + "other")[0] == 200
        read.append(time.perf_counter() - started)
    return posted, read


def transactions(url: str) -> int | None:
    if not url.startswith("postgresql"):
        return None
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        value = int(connection.exec_driver_sql(query).scalar_one())
    engine.dispose()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=200, help="publishes delivered to a waiting consumer (200)"
    )
    parser.add_argument("--database-url", default="", help="a database server instead of a SQLite file")
    args = parser.parse_args()
    python, app, shared = lighttpd.deployed("bench/waiting.py", "amqwait")
    url = args.database_url or f"sqlite:///{shared}/atommq.db"
    server = webservers.WebServer("lighttpd-fastcgi", python, app, {"ATOMMQ_DATABASE_URL": url})
    try:
        print(f"AtomMQ on {url}, through lighttpd (2 FastCGI processes)")
        waited = delivery(server.port, args.rounds, None)
        polled = delivery(server.port, max(20, args.rounds // 10), 1.0)
        print(f"  publish to delivery, waiting consumer:  median {ms(waited, 0.5)}, p99 {ms(waited, 0.99)}")
        print(f"  publish to delivery, polling every 1 s:  median {ms(polled, 0.5)}, p99 {ms(polled, 0.99)}")

        last_id(lighttpd.Client(server.port), "other")
        pids = fastcgi_pids(server)
        for count in (0, 100):
            waiters = Waiters(server.port, "idle", count) if count else None
            cpu, xacts = cpu_seconds(pids), transactions(url)
            time.sleep(10)
            cpu, xacts = cpu_seconds(pids) - cpu, (transactions(url) or 0) - (xacts or 0)
            if waiters:
                waiters.stop()
            extra = f", {xacts / 10:.0f} transactions/s on the server" if url.startswith("postgresql") else ""
            print(
                f"  {count:3} waiting, nothing published: the FastCGI processes use {cpu / 10 * 100:.1f}% of a CPU{extra}"
            )

        for label, feed in (
            ("no waiters", None),
            ("100 waiting on another feed", "idle"),
            ("100 following the feed", "load"),
        ):
            waiters = Waiters(server.port, feed, 100) if feed else None
            posted, read = publishes(server.port, 500)
            answers = waiters.answers if waiters else 0
            if waiters:
                waiters.stop()
            print(
                f"  1 publisher, {label:28}: publish p50 {ms(posted, 0.5)}, p99 {ms(posted, 0.99)}; "
                f"a GET beside it p50 {ms(read, 0.5)}, p99 {ms(read, 0.99)}"
                + (f"; {answers} answers to the waiters" if waiters else "")
            )
        print(
            f"  (medians of {len(waited)} and {len(polled)} deliveries; {statistics.mean(waited) * 1000:.1f} ms mean)"
        )
    finally:
        server.stop()
        shutil.rmtree(app, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    main()
