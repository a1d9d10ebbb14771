#!/usr/bin/env python3
"""AtomMQ benchmark: median latency and throughput of publish, full-page read and 304 poll,
through the real FastCGI script (over a unix socket) and the real CGI script, against a fresh
SQLite file; and the cost of importing the dependencies alone, the floor of any CGI request.

    python3 bench/benchmark.py            # about a minute
    python3 bench/benchmark.py --quick    # fewer rounds

Figures, not assertions: run it on an idle machine and quote the machine with the numbers.
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import fastcgi_client  # noqa: E402

ENTRY = b"<entry><title>benchmark</title><content>an important message, of a typical size</content></entry>"


def params(method: str, path: str, query: str = "", body: bytes = b"", etag: str = "") -> dict[str, str]:
    headers = {"Content-Type": "application/atom+xml"} if body else {}
    if etag:
        headers["If-None-Match"] = etag
    return fastcgi_client.meta_variables(method, path, query, headers, body)


def status_and_etag(output: bytes) -> tuple[int, str]:
    head = output.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    headers = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
    return int(headers.get("Status", "200").split()[0]), headers.get("ETag", "")


def measure(label: str, action: Callable[[], None], rounds: int) -> dict[str, float]:
    times = []
    started = time.perf_counter()
    for _ in range(rounds):
        t0 = time.perf_counter()
        action()
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    result = {"median_ms": statistics.median(times) * 1000, "per_s": rounds / elapsed}
    print(
        f"  {label:<34} median {result['median_ms']:8.2f} ms   {result['per_s']:8.1f} /s   ({rounds} runs)",
        flush=True,
    )
    return result


def measure_interleaved(actions: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict[str, float]]:
    """Round-robin over the actions, so that a slow spell of the machine hits them all alike."""
    times: dict[str, list[float]] = {label: [] for label in actions}
    for _ in range(rounds):
        for label, action in actions.items():
            t0 = time.perf_counter()
            action()
            times[label].append(time.perf_counter() - t0)
    results = {}
    for label, samples in times.items():
        median = statistics.median(samples)
        results[label] = {"median_ms": median * 1000, "per_s": 1 / statistics.mean(samples)}
        print(
            f"  {label:<34} median {median * 1000:8.2f} ms   {results[label]['per_s']:8.1f} /s   "
            f"({rounds} runs)",
            flush=True,
        )
    return results


def run(command: list[str], env: dict[str, str], body: bytes = b"") -> bytes:
    return subprocess.run(command, input=body, env=env, capture_output=True, check=True).stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke test")
    parser.add_argument("--page-size", type=int, default=1000, help="messages in a full page (1000)")
    args = parser.parse_args()
    scale = 5 if args.quick else 1
    # As a deployment should (README, Deploy): without up-to-date .pyc files every CGI request
    # would compile AtomMQ's modules again.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "atommq")], check=True)
    work = Path(tempfile.mkdtemp(prefix="amqbench"))
    # Access control on, as a locked-down install has it: feed "login" needs user "bench"
    # (HTTP Basic, checked against the users file), every other feed stays open.
    subprocess.run(
        [sys.executable, "-m", "atommq", "users", "add", "bench", "--file", str(work / "users")],
        input="bench-password\n",
        text=True,
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    (work / "atommq.ini").write_text(
        f"[atommq]\nusers_file = {work}/users\n[publish]\nlogin = bench\n* = @anyone\n[read]\n* = @anyone\n"
    )
    env = {
        **os.environ,
        "ATOMMQ_DATABASE_URL": f"sqlite:///{work}/atommq.db",
        "ATOMMQ_PAGE_SIZE": str(args.page_size),
        "ATOMMQ_LOG_FILE": str(work / "atommq.log"),
        "ATOMMQ_CONFIG": str(work / "atommq.ini"),
    }
    login = {
        **params("POST", "/feed=login", body=ENTRY),
        "HTTP_AUTHORIZATION": "Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ=",
    }
    print(
        f"AtomMQ benchmark on {platform.node()}: {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}; SQLite in {work}"
    )
    results: dict[str, dict[str, float]] = {}
    python = [sys.executable, "-c"]
    socket_path = work / "fcgi.sock"
    server = subprocess.Popen(
        [str(ROOT / "cgi-bin" / "atommq.fcgi"), str(socket_path)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        while not socket_path.exists():
            time.sleep(0.02)
        address = str(socket_path)

        def fcgi(meta: dict[str, str], body: bytes = b"", expect: int = 200) -> str:
            status, etag = status_and_etag(fastcgi_client.request(address, meta, body)[0])
            assert status == expect, status
            return etag

        print("FastCGI (atommq.fcgi on a unix socket, one connection per request):")
        publish = params("POST", "/feed=bench", body=ENTRY)
        results["fcgi_publish"] = measure("publish", lambda: fcgi(publish, ENTRY, 201), 2000 // scale)
        results["fcgi_login"] = measure(
            "publish with a login", lambda: fcgi(login, ENTRY, 201), 1000 // scale
        )
        while True:  # at least two full pages, so that a page is full and has a next link
            etag = fcgi(params("GET", "/feed=bench"))
            count = int(
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("
                        "'select count(*) from atommq_messages').fetchone()[0])",
                        f"{work}/atommq.db",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            if count >= 2 * args.page_size:
                break
            for _ in range(2 * args.page_size - count):
                fcgi(publish, ENTRY, 201)
        read = params("GET", "/feed=bench")
        results["fcgi_read"] = measure(
            f"read a {args.page_size}-message page", lambda: fcgi(read), 100 // scale
        )
        poll = params("GET", "/feed=bench", etag=etag)
        results["fcgi_poll"] = measure("304 poll", lambda: fcgi(poll, expect=304), 2000 // scale)
    finally:
        server.terminate()
        server.wait()

    print("CGI (atommq.cgi, a new process per request), interleaved with the import floor:")
    # Run as lighttpd's cgi.assign does, by the interpreter itself: through its shebang, the
    # script would also time this machine's pyenv shim (a shell script), not AtomMQ.
    script = [sys.executable, str(ROOT / "cgi-bin" / "atommq.cgi")]
    floor = "import dataset, lxml.etree"
    results.update(
        measure_interleaved(
            {
                "bare python3": lambda: run([*python, "pass"], env),
                "floor: import dataset, lxml": lambda: run([*python, floor], env),
                "floor, exit without teardown": lambda: run(
                    [*python, floor + "; import os; os._exit(0)"], env
                ),
                "CGI publish": lambda: run(script, {**env, **publish}, ENTRY),
                "CGI publish with a login": lambda: run(script, {**env, **login}, ENTRY),
                f"CGI read a {args.page_size}-message page": lambda: run(script, {**env, **read}),
                "CGI 304 poll": lambda: run(script, {**env, **poll}),
            },
            30 // scale + 3,
        )
    )
    for floor_label in ("floor: import dataset, lxml", "floor, exit without teardown"):
        base = results[floor_label]["median_ms"]
        print(
            f"CGI over '{floor_label}': "
            + ", ".join(
                f"{label.removeprefix('CGI ')} {100 * (results[label]['median_ms'] / base - 1):+.0f}%"
                for label in results
                if label.startswith("CGI")
            )
        )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
