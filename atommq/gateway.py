"""The two ways a web server runs AtomMQ: as a CGI script and as a FastCGI server (flup).

Each builds the app from the configuration and hands it to the gateway; the scripts in
cgi-bin/ are a few lines that call these (and atommq/wsgi.py builds its app with build_app).
"""

import collections
import logging
import os
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from atommq import config
from atommq.errors import ConfigError, plain_text

App = Callable[[dict[str, Any], Any], Iterable[bytes]]

CGI_USAGE = """\
atommq.cgi is a CGI script: a web server runs it for each request, with the request in its
environment (REQUEST_METHOD, PATH_INFO, ...). Point your server's CGI at it; see README.md.
To try AtomMQ without a web server, run: python3 -m atommq serve
"""

FASTCGI_USAGE = """\
usage: atommq.fcgi [SOCKET_PATH | HOST:PORT]

A FastCGI server. A web server that spawns it (lighttpd's bin-path, Apache's mod_fcgid) hands it
its listening socket on standard input: no argument is needed then. Started by hand, give the
unix socket path or the HOST:PORT to listen on, e.g. atommq.fcgi /run/atommq/atommq.sock
"""

# flup's worker threads for requests that do not wait; each holds at most one database
# connection (the pool has room for all). Waiting requests hold none while they wait.
FASTCGI_THREADS = 8
# Under CGI a waiting request is a Python process of its own (48 MB resident) for up to max_wait;
# shared hosts cap their users' processes (often at 20 to 30): the default cap of waiters there.
CGI_MAX_WAITERS = 10
# The body of one FastCGI record (its contentLength is 16 bits), a multiple of 8.
FASTCGI_RECORD = 65528


def _misconfigured(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    line = "AtomMQ is not configured correctly; the server's error log says why"
    return plain_text(start_response, "500 Internal Server Error", line)


def build_app(defaults: dict[str, str] | None = None) -> App:
    """The app from the settings (config.load's `defaults` are a gateway's own). Settings that
    are wrong, or a start-up that fails, give an app that answers every request with a 500,
    the reason written to stderr (the server's error log), not a process that dies with a
    traceback on every request."""
    try:
        from atommq.app import make_app

        settings = config.load(defaults=defaults)
        return make_app(settings, config.configure_logging(settings))
    except ConfigError as error:
        sys.stderr.write(f"AtomMQ: {error}\n")
    except Exception:  # e.g. a database driver that is not installed: say why, in the log
        sys.stderr.write(f"AtomMQ could not start:\n{traceback.format_exc()}")
    return _misconfigured


def _input_terminated(app: Any) -> Any:
    """CGI and FastCGI end a request's input where its body ends (the web server closes the
    script's stdin; FastCGI closes the stream with an empty FCGI_STDIN record), so a body
    without a Content-Length (a chunked upload) can be read to the end of input."""

    def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)  # type: ignore[no-any-return]

    return application


def run_cgi() -> int:
    if "REQUEST_METHOD" not in os.environ:
        from atommq.check import diagnosis  # run from a terminal: say what a server would trip on

        sys.stderr.write(CGI_USAGE + diagnosis())
        return 2
    from wsgiref.handlers import CGIHandler

    app = build_app({"max_waiters": str(CGI_MAX_WAITERS)})
    CGIHandler().run(_input_terminated(app))
    # The answer is written and the transaction committed. Skip the interpreter's teardown of
    # SQLAlchemy's many modules: it costs a CGI request about a fifth (bench/benchmark.py).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def parse_bind(text: str) -> str | tuple[Any, ...]:
    """A unix socket path, or HOST:PORT ([::1]:PORT for IPv6), as flup's bindAddress."""
    host, colon, port = text.rpartition(":")
    if not colon or "/" in text or not port.isdigit():
        return text
    if host.startswith("[") and host.endswith("]"):
        return (host[1:-1], int(port), 0, 0)
    return (host, int(port))


def _stdin_is_socket() -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(0).st_mode)
    except OSError:
        return False


class ThreadPool:
    """The thread pool flup's server hands each connection to (its addJob and shutdown), in
    place of flup's own, which closed a connection that found every thread busy (the web server
    then answers the client with an error), and which counts a thread idle until it has taken
    the job handed to it, so that a burst of connections queued behind threads already spoken
    for (seen: 24 consumers arriving together, ~9 busy threads, a publish waiting 7 s behind
    waiting consumers). Here every job is queued, a thread is started for each job that no idle
    thread will take (`most` threads at most), and threads beyond SPARE idle ones end."""

    SPARE = 5

    def __init__(self, most: int) -> None:
        self._most = most
        self._changed = threading.Condition()
        self._jobs: collections.deque[Any] = collections.deque()
        self._threads = self._idle = 0  # idle: not running a job (waiting, or about to)
        self._stopping = False

    def addJob(self, job: Any, allowQueuing: bool = True) -> bool:  # noqa: N802, N803
        with self._changed:
            self._jobs.append(job)
            if self._idle < len(self._jobs) and self._threads < self._most:
                self._threads += 1
                self._idle += 1
                threading.Thread(target=self._work, name="atommq-fastcgi", daemon=True).start()
            self._changed.notify()
        return True

    def shutdown(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def _work(self) -> None:
        with self._changed:
            while True:
                while not self._jobs:
                    if self._stopping or self._idle > self.SPARE:
                        self._threads -= 1
                        self._idle -= 1
                        return
                    self._changed.wait()
                job = self._jobs.popleft()
                self._idle -= 1
                self._changed.release()
                try:
                    job.run()
                except Exception:  # flup's own failure (the app answers its errors itself)
                    sys.stderr.write(f"AtomMQ: a FastCGI connection failed:\n{traceback.format_exc()}")
                finally:
                    del job  # its connection is closed now, not when this thread runs the next
                    self._changed.acquire()
                self._idle += 1


def run_fastcgi(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv) or len(argv) > 1:
        sys.stdout.write(FASTCGI_USAGE)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv:
        bind: str | tuple[Any, ...] | None = parse_bind(argv[0])
    elif _stdin_is_socket():
        bind = None  # spawned by the web server: the listening socket is fd 0
    else:
        from atommq.check import diagnosis  # run from a terminal: say what a server would trip on

        sys.stderr.write(FASTCGI_USAGE + diagnosis())
        return 2
    from flup.server.fcgi import WSGIServer

    from atommq.app import make_app, open_store

    try:
        settings = config.load()
        log = config.configure_logging(settings)
        app = make_app(settings, log, store=open_store(settings, pool_size=FASTCGI_THREADS))
    except ConfigError as error:
        sys.stderr.write(f"AtomMQ: {error}\n")
        return 2
    # debug=False: flup's debug pages leak tracebacks to clients; our app never raises anyway.
    server = WSGIServer(_input_terminated(app), bindAddress=bind, debug=False, multiprocess=True)
    # Requests that wait for a message (waiting.py) take threads of their own, max_waiters at
    # most: FASTCGI_THREADS are always left for the rest.
    server._threadPool = ThreadPool(FASTCGI_THREADS + settings.max_waiters)
    # flup cuts an answer into records of at most 8 KiB (for mod_fastcgi's old receive buffer),
    # three sends each, copying the rest of the body every time: a 300 KB page took 111 sends.
    # Records of 64 KiB (the protocol's largest, a multiple of 8: no padding) take 5.
    server.maxwrite = FASTCGI_RECORD + 8  # its header included
    server.run()
    return 0
