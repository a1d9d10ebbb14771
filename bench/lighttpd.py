"""AtomMQ through lighttpd as deploy/lighttpd.conf runs it (FastCGI, 2 processes), against its floor:
a flup "hello" WSGI app that the same config spawns the same way. Every figure is a median of
interleaved requests and a ratio to the floor's GET (the floor also answers a POST of the same
body, and GETs as large as the pages); then publishing under contention: 1 publisher, and 8
publishing processes over two such lighttpd servers on one database, with p50, p99 and max, after
the same load on two hello servers (on 2 cores, 8 clients' scheduling is much of any p99).

    python3 bench/lighttpd.py [--rounds N] [--database-url URL]

Needs root (lighttpd drops to www-data) and Debian's lighttpd, as the tests do (tests/webservers.py
starts the servers, from the sample itself).
"""

import argparse
import http.client
import multiprocessing
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import webservers  # noqa: E402

HELLO = """#!/usr/bin/env python3
from flup.server.fcgi import WSGIServer

def hello(environ, start_response):
    # Reads what it is sent; ?N answers N bytes, as big as a page of AtomMQ's.
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    body = b"x" * int(environ.get("QUERY_STRING") or 0) or b"hello\\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]

server = WSGIServer(hello, multiprocess=True)
server.maxwrite = 65536  # records as large as AtomMQ's (atommq/gateway.py)
server.run()
"""
ENTRY = b"<entry><title>benchmark</title><content>an important message, of a typical size</content></entry>"
HEADERS = {"Content-Type": "application/atom+xml", "Host": "localhost"}


class Client:
    """One keep-alive connection to a server, as a consumer that polls would hold."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ):
        self.connection.request(method, path, body=body, headers={"Host": "localhost", **(headers or {})})
        response = self.connection.getresponse()
        data = response.read()
        return response.status, response.getheader("ETag", ""), data


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def percentile_ms(times: list[float], share: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


class Commit:
    """The floor of a durable publish on SQLite: one row inserted and committed with sqlite3 as
    AtomMQ commits (WAL, synchronous=FULL: an fsync), in a file beside AtomMQ's. This VM's fsync
    varies several-fold over a day, and a publish pays it."""

    def __init__(self, folder: Path) -> None:
        self.connection = sqlite3.connect(folder / "commit-floor.db", isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("CREATE TABLE t (entry BLOB)")

    def __call__(self) -> tuple[int, str, bytes]:
        self.connection.execute("BEGIN IMMEDIATE")
        self.connection.execute("INSERT INTO t VALUES (?)", (ENTRY,))
        self.connection.execute("COMMIT")
        return 200, "", b""


def latency(atommq: Client, hello: Client, rounds: int, commit: Commit | None) -> None:
    """The requests of issue 11, interleaved round by round so that noise hits all alike."""
    for _ in range(1000):
        assert atommq.request("POST", "/atommq/feed=big", ENTRY, HEADERS)[0] == 201
    status, _, page = atommq.request("GET", "/atommq/feed=big")
    ids = [part.split(b"</id>")[0].decode() for part in page.split(b"<entry><id>")[1:]]
    assert status == 200 and len(ids) == 1000, (status, len(ids))
    after_847 = f"/atommq/feed=big?start_after={ids[846]}"
    after_899 = f"/atommq/feed=big?start_after={ids[899]}"  # 100 messages: a browser's page
    etag = atommq.request("GET", "/atommq/feed=big")[1]
    sizes = {
        name: len(atommq.request("GET", path)[2])
        for name, path in (("big", "/atommq/feed=big"), ("153", after_847))
    }
    cases: dict[str, Callable[[], tuple[int, str, bytes]]] = {
        "floor: hello GET": lambda: hello.request("GET", "/atommq/hello"),
        "floor: hello POST, same body": lambda: hello.request("POST", "/atommq/hello", ENTRY, HEADERS),
        **({"floor: a SQLite commit": commit} if commit else {}),
        f"floor: hello GET, {sizes['big']} B": lambda: hello.request("GET", f"/atommq/hello?{sizes['big']}"),
        f"floor: hello GET, {sizes['153']} B": lambda: hello.request("GET", f"/atommq/hello?{sizes['153']}"),
        "publish a small message": lambda: atommq.request("POST", "/atommq/feed=small", ENTRY, HEADERS),
        "read a 1000-message page": lambda: atommq.request("GET", "/atommq/feed=big"),
        "read a 153-message page": lambda: atommq.request("GET", after_847),
        "read a 1000-message page, JSON": lambda: atommq.request("GET", "/atommq/feed=big?format=json"),
        "read a 153-message page, JSON": lambda: atommq.request("GET", f"{after_847}&format=json"),
        "read 100 messages, Atom": lambda: atommq.request("GET", after_899),
        "read 100 messages, browser page": lambda: atommq.request("GET", f"{after_899}&format=html"),
        "304 poll": lambda: atommq.request("GET", "/atommq/feed=big", headers={"If-None-Match": etag}),
    }
    expected = {"floor: hello GET": 200, "publish a small message": 201, "304 poll": 304}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            started = time.perf_counter()
            status = run()[0]
            times[name].append(time.perf_counter() - started)
            assert status == expected.get(name, 200), (name, status)
    floor = median_ms(times["floor: hello GET"])
    print(f"Through lighttpd, FastCGI (2 processes), median of {rounds} interleaved rounds:")
    for name, measured in times.items():
        print(f"  {name:33} {median_ms(measured):7.2f} ms   {median_ms(measured) / floor:5.1f} x floor")


def deployed(script: str, prefix: str) -> tuple[Path, Path, Path]:
    """What a benchmark through lighttpd needs: the www-data Python, a copy of the app it may
    run, and a folder it may write (the database's); or exit saying what is missing."""
    reason = webservers.missing()
    if reason:
        sys.exit(f"{script}: {reason}")
    python = webservers.www_python()
    app = webservers.deploy_app(python)
    shared = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    shutil.chown(shared, webservers.WWW_USER, webservers.WWW_USER)
    return python, app, shared


def publisher(port: int, count: int, path: str, results: "multiprocessing.Queue[list[float]]") -> None:
    client, times = Client(port), []
    for _ in range(count):
        started = time.perf_counter()
        status = client.request("POST", path, ENTRY, HEADERS)[0]
        times.append(time.perf_counter() - started)
        assert status in (200, 201), status
    results.put(times)


def contention(ports: list[int], publishers: int, count: int, path: str) -> tuple[float, list[float]]:
    """`publishers` processes, each posting `count` messages to `path`, spread over `ports`."""
    results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
    processes = [
        multiprocessing.Process(target=publisher, args=(ports[i % len(ports)], count, path, results))
        for i in range(publishers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    times = [t for _ in processes for t in results.get(timeout=600)]
    elapsed = time.perf_counter() - started
    for process in processes:
        process.join()
    return len(times) / elapsed, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=600, help="interleaved rounds of the latency part")
    parser.add_argument("--messages", type=int, default=250, help="messages per publisher under contention")
    parser.add_argument("--database-url", default="", help="a database server instead of a SQLite file")
    args = parser.parse_args()
    reason = webservers.missing()
    if reason:
        sys.exit(f"bench/lighttpd.py: {reason}")
    python = webservers.www_python()
    app, floor_app = webservers.deploy_app(python), webservers.deploy_app(python)
    (floor_app / "cgi-bin" / "atommq.fcgi").write_text(HELLO)
    shared = Path(tempfile.mkdtemp(prefix="amqbench", dir="/tmp"))
    shutil.chown(shared, webservers.WWW_USER, webservers.WWW_USER)
    url = args.database_url or f"sqlite:///{shared}/atommq.db"
    servers: list[webservers.WebServer] = []
    try:
        for folder in (app, app, floor_app, floor_app):
            servers.append(
                webservers.WebServer("lighttpd-fastcgi", python, folder, {"ATOMMQ_DATABASE_URL": url})
            )
        heads, hellos = servers[:2], servers[2:]
        hello = hellos[0]
        print(f"AtomMQ on {url}")
        commit = None if args.database_url else Commit(shared)
        latency(Client(heads[0].port), Client(hello.port), args.rounds, commit)
        # The floor under the same load: as many processes posting to the hello app.
        for what, path, publishers, over in (
            ("floor: hello", "/atommq/hello", 1, hellos[:1]),
            ("floor: hello", "/atommq/hello", 8, hellos),
            ("AtomMQ", "/atommq/feed=load", 1, heads[:1]),
            ("AtomMQ", "/atommq/feed=load", 8, heads),
        ):
            rate, times = contention([head.port for head in over], publishers, args.messages, path)
            print(
                f"  {what:12} {publishers} publisher{'s' * (publishers > 1)} over {len(over)} lighttpd: {rate:6.0f} /s, "
                f"p50 {percentile_ms(times, 0.5):6.2f} ms, p99 {percentile_ms(times, 0.99):7.2f} ms, "
                f"max {max(times) * 1000:7.1f} ms"
            )
    finally:
        for server in servers:
            server.stop()
        for folder in (app, floor_app, shared):
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
