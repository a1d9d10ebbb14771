#!/usr/bin/env python3
"""What a CGI request costs over a bare Python and over importing AtomMQ's dependencies: median
wall time of a process per request (cgi-bin/atommq.cgi, as a web server runs it), interleaved
round by round with `python3 -c pass` and `python3 -c "import dataset, lxml.etree"`.

    python3 bench/cgi.py                        # about a minute on 2 cores
    python3 bench/cgi.py --also /tmp/before     # and another checkout's script, e.g. from
                                                # git worktree add /tmp/before HEAD~1

Each checkout serves its own SQLite file in a temporary folder. Figures, not assertions: run it
on an idle machine and quote the machine with the numbers. `python3 -X importtime
cgi-bin/atommq.cgi`, with the same environment, says where a request's time goes.
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

MESSAGE = b"disk /var is 91% full"
BARE = "bare python3"
FLOOR = "import dataset, lxml.etree"
# The gateway ends a request with os._exit (no teardown of SQLAlchemy's modules): so can a floor.
FLOOR_EXIT = FLOOR + "; import os; os._exit(0)"


def run(command: list[str], env: dict[str, str], body: bytes = b"", expect: str = "") -> None:
    output = subprocess.run(command, input=body, env=env, capture_output=True, check=True).stdout
    if expect and not output.startswith(f"Status: {expect}".encode()):
        sys.exit(f"bench/cgi.py: {' '.join(command)} answered {output[:200]!r}, not {expect}")


def requests(root: Path, work: Path, messages: int) -> dict[str, Callable[[], None]]:
    """A GET of a small feed page and a publish, through `root`'s CGI script, on a database of
    its own that has `messages` messages in the page's feed."""
    # As a deployment should (README, Deploy): without .pyc files every request compiles AtomMQ.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "atommq")], check=True)
    # What a web server gives a CGI script, no more: not this shell's PYTHON* or virtualenv.
    env = {"PATH": os.environ["PATH"], "ATOMMQ_DATABASE_URL": f"sqlite:///{work}/atommq.db"}
    script = [sys.executable, str(root / "cgi-bin" / "atommq.cgi")]
    headers = {"Content-Type": "text/plain"}
    publish = {**env, **fastcgi_client.meta_variables("POST", "/feed=inbox", headers=headers, body=MESSAGE)}
    seed = {**env, **fastcgi_client.meta_variables("POST", "/feed=small", headers=headers, body=MESSAGE)}
    for _ in range(messages):
        run(script, seed, MESSAGE, "201")
    read = {**env, **fastcgi_client.meta_variables("GET", "/feed=small")}
    return {
        f"CGI GET a {messages}-message page": lambda: run(script, read, expect="200"),
        "CGI publish (POST text/plain)": lambda: run(script, publish, MESSAGE, "201"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds (30)")
    parser.add_argument("--messages", type=int, default=10, help="messages in the page read (10)")
    parser.add_argument(
        "--also", type=Path, action="append", default=[], metavar="DIR", help="another checkout to measure"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amqbench"))
    try:
        python = [sys.executable, "-c"]
        env = {"PATH": os.environ["PATH"]}
        cases: dict[str, Callable[[], None]] = {
            BARE: lambda: run([*python, "pass"], env),
            FLOOR: lambda: run([*python, FLOOR], env),
            FLOOR_EXIT: lambda: run([*python, FLOOR_EXIT], env),
        }
        for number, root in enumerate([ROOT, *args.also]):
            folder = work / str(number)
            folder.mkdir()
            for label, action in requests(root.resolve(), folder, args.messages).items():
                cases[label if number == 0 else f"{label} [{root}]"] = action
        print(
            f"AtomMQ CGI on {platform.node()}: {os.cpu_count()} cores, {platform.platform()}; "
            f"{sys.executable} (Python {platform.python_version()}), median of {args.rounds} rounds"
        )
        times: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(args.rounds):  # round-robin: a slow spell of the machine hits all alike
            for label, action in cases.items():
                started = time.perf_counter()
                action()
                times[label].append(time.perf_counter() - started)
        medians = {label: statistics.median(samples) * 1000 for label, samples in times.items()}
        width = max(map(len, medians))
        print(f"  {'':{width}}  {'median':>9}  {'x bare':>6}  {'x imports':>9}  {'x imports, _exit':>16}")
        for label, median in medians.items():
            print(
                f"  {label:{width}}  {median:6.1f} ms  {median / medians[BARE]:6.2f}  "
                f"{median / medians[FLOOR]:9.2f}  {median / medians[FLOOR_EXIT]:16.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
