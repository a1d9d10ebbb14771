"""Real WSGI servers from PyPI, gunicorn and waitress, serving atommq.wsgi:application as the
README's one-line commands do: on a free port of 127.0.0.1, mounted at /atommq (or at the root),
with the settings in their environment. Each logs to a file in the test's folder."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from webservers import answers, free_port

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("gunicorn", "waitress")
PREFIX = "/atommq"


def missing(kind: str) -> str | None:
    """Why `kind` cannot run here, or None."""
    if importlib.util.find_spec(kind) is None:
        return f"{kind} is not installed (python3 -m pip install -r requirements-dev.txt)"
    return None


def command(kind: str, port: int, prefix: str) -> list[str]:
    """The README's command, run by this Python (python3 -m, as the gunicorn and waitress-serve
    scripts do) so that a venv's server is the one tested. Threads: a waiting GET holds one."""
    if kind == "gunicorn":  # its prefix comes from SCRIPT_NAME in the environment (below)
        return [
            *(sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--threads", "8"),
            *("--bind", f"127.0.0.1:{port}", "atommq.wsgi:application"),
        ]
    return [
        *(sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}", "--threads=8"),
        *([f"--url-prefix={prefix}"] if prefix else []),
        "atommq.wsgi:application",
    ]


class WSGIServer:
    """One real gunicorn or waitress serving AtomMQ at http://127.0.0.1:PORT{prefix}."""

    def __init__(self, kind: str, env: dict[str, str], folder: Path, prefix: str = PREFIX) -> None:
        """`env`: the ATOMMQ_* settings. Run from the repository, as from the folder that holds
        atommq/ (the README says so)."""
        self.kind = kind
        self.port = free_port()
        self.log_path = folder / f"{kind}-stderr.log"
        environ = {**os.environ, **env}
        environ.pop("SCRIPT_NAME", None)
        # gunicorn (25.1 on) opens a control socket in XDG_RUNTIME_DIR, else in ~/.gunicorn/,
        # where servers of tests run side by side would take each other's; one of its own here
        # (a short path: unix socket paths are limited to 107 bytes, tmp_path can be longer).
        self.runtime = Path(tempfile.mkdtemp(prefix="amqw"))
        environ["XDG_RUNTIME_DIR"] = str(self.runtime)
        if kind == "gunicorn" and prefix:
            environ["SCRIPT_NAME"] = prefix
        with self.log_path.open("wb") as log:
            # A session of its own: gunicorn's workers are stopped with it, whatever happens.
            self.process = subprocess.Popen(
                command(kind, self.port, prefix),
                cwd=ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not answers(self.port, lambda: self.process.poll() is None):
            self.stop()
            raise RuntimeError(f"{kind} did not start: {self.stderr}")

    @property
    def stderr(self) -> str:
        """What the server wrote: its own log lines, and what AtomMQ wrote to stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        # Killed with its workers, not asked to stop: gunicorn's shutdown waits for a request in
        # hand (15 s seen after a refused upload), and a kill loses nothing a client was told
        # is stored (test_crash.py).
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        shutil.rmtree(self.runtime, ignore_errors=True)
