"""Two versions of AtomMQ through lighttpd, measured in pairs: this VM's speed moves by 2x within
an hour, so a change is only seen against the old code run in the same minutes. Each version
gets its own two lighttpd servers (the sample, 2 FastCGI processes each) on a SQLite file of its
own; single publishes alternate between the versions, then 8 publishing processes over two
servers run on each in turn, `--repeat` times.

    python3 bench/compare.py REV [--publishes N] [--repeat N]

REV is a git revision (checked out in a temporary worktree) compared with the working tree.
Needs root and Debian's lighttpd, as bench/lighttpd.py does.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import lighttpd  # noqa: E402

import webservers  # noqa: E402


def serve(python: Path, root: Path) -> tuple[list[webservers.WebServer], list[Path]]:
    """Two lighttpd servers running `root`'s AtomMQ on one fresh SQLite file."""
    webservers.ROOT = root  # deploy_app copies the version from here
    app = webservers.deploy_app(python)
    shared = Path(tempfile.mkdtemp(prefix="amqcompare", dir="/tmp"))
    shutil.chown(shared, webservers.WWW_USER, webservers.WWW_USER)
    settings = {"ATOMMQ_DATABASE_URL": f"sqlite:///{shared}/atommq.db"}
    servers = [webservers.WebServer("lighttpd-fastcgi", python, app, settings) for _ in range(2)]
    return servers, [app, shared]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the git revision to compare the working tree with")
    parser.add_argument("--publishes", type=int, default=1500, help="single publishes per version (1500)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of 8 publishers per version (2)")
    args = parser.parse_args()
    reason = webservers.missing()
    if reason:
        sys.exit(f"bench/compare.py: {reason}")
    python = webservers.www_python()
    old = Path(tempfile.mkdtemp(prefix="amqrev", dir="/tmp"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.rev], check=True)
    versions = {args.rev: old, "working tree": ROOT}
    servers: dict[str, list[webservers.WebServer]] = {}
    folders: list[Path] = []
    try:
        for name, root in versions.items():
            servers[name], made = serve(python, root)
            folders += made
        clients = {name: lighttpd.Client(pair[0].port) for name, pair in servers.items()}
        times: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.publishes):
            for name, client in clients.items():
                started = time.perf_counter()
                status = client.request("POST", "/atommq/feed=small", lighttpd.ENTRY, lighttpd.HEADERS)[0]
                times[name].append(time.perf_counter() - started)
                assert status == 201, status
        print(f"single publishes, alternating ({args.publishes} each, the first 100 not counted):")
        for name, measured in times.items():
            print(f"  {name:14} median {statistics.median(measured[100:]) * 1000:6.3f} ms")
        print("8 publishing processes over two lighttpd, each version in turn:")
        for _ in range(args.repeat):
            for name, pair in servers.items():
                rate, measured = lighttpd.contention([s.port for s in pair], 8, 250, "/atommq/feed=load")
                print(
                    f"  {name:14} {rate:5.0f} /s, p50 {lighttpd.percentile_ms(measured, 0.5):6.2f} ms, "
                    f"p99 {lighttpd.percentile_ms(measured, 0.99):6.2f} ms"
                )
    finally:
        for pair in servers.values():
            for server in pair:
                server.stop()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)


if __name__ == "__main__":
    main()
