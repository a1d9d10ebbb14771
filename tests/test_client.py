"""The client verbs, `atommq publish` and `atommq consume`, run as a user runs them (a process
of their own) against the real server: in-process (the app on a threaded wsgiref server in
this process) and through lighttpd as deploy/lighttpd.conf runs it (FastCGI)."""

import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import pytest

import webservers
from conftest import ROOT, _deployed_app, need

EXIT_COMMAND_FAILED, EXIT_LOCKED, EXIT_GAP, EXIT_REFUSED, EXIT_TEMPFAIL, EXIT_NOPERM = 1, 3, 4, 65, 75, 77


class InProcess:
    """The app on a threaded wsgiref server in this process, mounted at /atommq."""

    def __init__(self, folder: Path, settings: dict[str, str], certificate: Path | None = None) -> None:
        import socketserver
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from atommq import config
        from atommq.app import make_app
        from atommq.cli import mount

        class Threading(socketserver.ThreadingMixIn, WSGIServer):
            daemon_threads = True

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        # A log file of its own: a request still waiting when the test stops the server ends
        # with "Database is closed", which pytest's closed stderr could not take.
        settings = {
            "ATOMMQ_DATABASE_URL": f"sqlite:///{folder}/atommq.db",
            "ATOMMQ_LOG_FILE": str(folder / "atommq.log"),
            **settings,
        }
        loaded = config.load(settings)
        self.app = make_app(loaded, config.configure_logging(loaded))
        self.server = make_server(
            "127.0.0.1", 0, mount(self.app, "/atommq"), server_class=Threading, handler_class=Quiet
        )
        self.port = self.server.server_port
        if certificate is not None:  # https
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certificate)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.store.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["in-process", "lighttpd-fastcgi"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "in-process":
        running: Any = InProcess(tmp_path, {})
    else:
        python, app = _deployed_app()
        running = webservers.WebServer("lighttpd-fastcgi", python, app, {})
    yield running
    running.stop()


def feed_url(server: Any, name: str = "jobs") -> str:
    return f"http://127.0.0.1:{server.port}/atommq/feed={name}"


def atommq(
    *args: str, stdin: bytes = b"", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The command, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "atommq", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=120,
    )


def start(*args: str, cwd: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "atommq", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **kwargs,
    )


def publish(url: str, text: str) -> str:
    done = atommq("publish", url, "--text", text)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().strip()


def stored(url: str) -> list[dict[str, Any]]:
    """Every message of the feed, as JSON items."""
    items: list[dict[str, Any]] = []
    page: str | None = url + "?format=json"
    while page:
        with urllib.request.urlopen(page) as answer:
            document = json.loads(answer.read())
        items += document["items"]
        page = document.get("next_url")
    return items


def users_file(folder: Path, *names: str) -> Path:
    """A users file in which each user's password is NAME-password."""
    users = folder / "users"
    for name in names:
        subprocess.run(
            [sys.executable, "-m", "atommq", "users", "add", name, "--file", str(users)],
            input=f"{name}-password\n",
            text=True,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return users


# A COMMAND that appends the message's id and its content's bytes (hex) to a log, one line each.
LOGGER = "import os, sys; open('log', 'a').write(os.environ['ATOMMQ_ID'] + ' ' + sys.stdin.buffer.read().hex() + '\\n')"


def logged(folder: Path) -> list[tuple[str, bytes]]:
    path = folder / "log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(i, bytes.fromhex(h)) for i, h in (line.split(" ") for line in lines)]


def test_what_is_published_is_what_a_command_gets_byte_for_byte_in_order(server, tmp_path):
    url = feed_url(server)
    (tmp_path / "report.bin").write_bytes(bytes(range(256)))
    (tmp_path / "entry.xml").write_text("<entry><title>t</title><content>an &lt;entry&gt;</content></entry>")
    sent = [
        atommq("publish", url, "--text", "caf\u00e9 \u2603", "--title", "titled"),
        atommq("publish", url, "-", stdin=b"from stdin\n"),
        atommq("publish", url, str(tmp_path / "report.bin")),
        atommq("publish", url, str(tmp_path / "entry.xml")),
    ]
    assert [s.returncode for s in sent] == [0] * 4, [s.stderr for s in sent]
    ids = [s.stdout.decode().strip() for s in sent]
    done = atommq("consume", url, "--state", "cursor", "--", sys.executable, "-c", LOGGER, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert logged(tmp_path) == list(
        zip(
            ids, ["caf\u00e9 \u2603".encode(), b"from stdin\n", bytes(range(256)), b"an <entry>"], strict=True
        )
    )
    assert (tmp_path / "cursor").read_text().strip() == ids[-1]
    items = stored(url)
    assert items[0]["title"] == "titled"
    assert [i["_atommq"]["content_type"] for i in items[1:3]] == ["text", "application/octet-stream"]
    # Nothing new: nothing run again.
    assert (
        atommq(
            "consume", url, "--state", "cursor", "--", sys.executable, "-c", LOGGER, cwd=tmp_path
        ).returncode
        == 0
    )
    assert len(logged(tmp_path)) == 4


def test_consume_without_a_command_writes_the_messages_as_text_or_json_lines(server, tmp_path):
    url = feed_url(server)
    ids = [publish(url, text) for text in ("one", "two\n")]
    text = atommq("consume", url, "--state", "a", cwd=tmp_path)
    assert (text.returncode, text.stdout) == (0, b"one\ntwo\n")
    lines = atommq("consume", url, "--state", "b", "--format", "json", cwd=tmp_path).stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids


def test_a_failing_command_stops_the_run_before_its_message_and_the_next_run_retries_it(server, tmp_path):
    url = feed_url(server)
    ids = [publish(url, text) for text in ("good", "bad", "after")]
    failing = "import sys; body = sys.stdin.read(); sys.exit(3 if body == 'bad' else 0)"
    done = atommq("consume", url, "--state", "cursor", "--", sys.executable, "-c", failing, cwd=tmp_path)
    assert done.returncode == EXIT_COMMAND_FAILED
    assert ids[1] in done.stderr.decode() and "exited with 3" in done.stderr.decode()
    assert (tmp_path / "cursor").read_text().strip() == ids[0]
    # A COMMAND killed by a signal is a failure too.
    killed = "import os, signal, sys; sys.stdin.read(); os.kill(os.getpid(), signal.SIGKILL)"
    done = atommq("consume", url, "--state", "cursor", "--", sys.executable, "-c", killed, cwd=tmp_path)
    assert done.returncode == EXIT_COMMAND_FAILED and "killed" in done.stderr.decode()
    assert (tmp_path / "cursor").read_text().strip() == ids[0]
    done = atommq("consume", url, "--state", "cursor", "--", sys.executable, "-c", LOGGER, cwd=tmp_path)
    assert done.returncode == 0 and [i for i, _ in logged(tmp_path)] == ids[1:]


def test_a_consumer_killed_at_any_moment_loses_no_message(server, tmp_path):
    """SIGKILL at random moments, over many runs: every message is processed, in order; one is
    processed twice only right after itself (the kill came between its COMMAND's success and
    the save)."""
    url = feed_url(server)
    ids = [publish(url, f"m{n}") for n in range(40)]
    slow = LOGGER + "; import time; time.sleep(0.01)"
    kills = 0
    for _ in range(200):
        consumer = start(
            "consume",
            url,
            "--state",
            "cursor",
            "--",
            sys.executable,
            "-c",
            slow,
            cwd=tmp_path,
            stderr=subprocess.DEVNULL,
        )
        try:
            consumer.wait(timeout=random.uniform(0.05, 0.6))
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
            kills += 1
            continue
        if consumer.returncode == EXIT_LOCKED:  # the killed run's command still holds the file
            continue
        assert consumer.returncode == 0
        break
    else:  # a busy machine: every run was killed before the end; one more, left to finish
        for _ in range(50):
            finished = atommq(
                "consume", url, "--state", "cursor", "--", sys.executable, "-c", slow, cwd=tmp_path
            )
            if finished.returncode != EXIT_LOCKED:
                break
            time.sleep(0.1)
        assert finished.returncode == 0, finished.stderr
    seen = [i for i, _ in logged(tmp_path)]
    collapsed = [i for n, i in enumerate(seen) if n == 0 or seen[n - 1] != i]
    assert collapsed == ids, "a message was lost, reordered, or repeated after another"
    assert kills >= 3, "the consumer was hardly ever killed: the test proves nothing"
    assert (tmp_path / "cursor").read_text().strip() == ids[-1]


def test_two_runs_on_one_state_file_never_process_at_once(server, tmp_path):
    url = feed_url(server)
    publish(url, "one")
    hold = "import sys, time; sys.stdin.read(); time.sleep(3)"
    first = start("consume", url, "--state", "cursor", "--", sys.executable, "-c", hold, cwd=tmp_path)
    try:
        time.sleep(1.5)  # the first holds the file, inside its COMMAND
        second = atommq("consume", url, "--state", "cursor", cwd=tmp_path)
        assert second.returncode == EXIT_LOCKED and b"another run" in second.stderr
        started = time.monotonic()
        waited = atommq("consume", url, "--state", "cursor", "--wait-lock", cwd=tmp_path)
        assert waited.returncode == 0 and waited.stdout == b"", (
            "it ran only after the first, which took the message"
        )
        assert time.monotonic() - started > 0.5
    finally:
        first.wait(timeout=30)
    assert first.returncode == 0


def test_follow_gets_a_message_published_after_it_started_and_sigterm_ends_it_cleanly(server, tmp_path):
    url = feed_url(server)
    first = publish(url, "before")
    consumer = start("consume", url, "--state", "cursor", "--follow", cwd=tmp_path, stdout=subprocess.PIPE)
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline() == b"before\n"
        time.sleep(1)  # it now waits (long polling)
        published = time.monotonic()
        second = publish(url, "after")
        assert consumer.stdout.readline() == b"after\n"
        assert time.monotonic() - published < 5
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=10) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert (tmp_path / "cursor").read_text().strip() == second != first


def test_an_unknown_cursor_stops_with_exit_4_unless_told_to_go_on(server, tmp_path):
    url = feed_url(server)
    publish(url, "one")
    (tmp_path / "cursor").write_text("urn:uuid:00000000-0000-0000-0000-000000000000\n")
    done = atommq("consume", url, "--state", "cursor", cwd=tmp_path)
    assert done.returncode == EXIT_GAP and b"has no message with id" in done.stderr
    assert done.stderr.count(b"\n") == 1
    skipped = atommq("consume", url, "--state", "cursor", "--on-gap=skip", cwd=tmp_path)
    assert (skipped.returncode, skipped.stdout) == (0, b"one\n")


def test_from_now_starts_after_the_newest_message(server, tmp_path):
    url = feed_url(server)
    publish(url, "old")
    assert atommq("consume", url, "--state", "cursor", "--from-now", cwd=tmp_path).stdout == b""
    publish(url, "new")
    assert atommq("consume", url, "--state", "cursor", "--from-now", cwd=tmp_path).stdout == b"new\n"


class DroppingProxy:
    """Passes requests to the server, and for the first `drop` of them (of those whose method is
    `only`, when given) closes the client's connection without its answer, after the server
    answered: a lost answer."""

    def __init__(
        self, upstream: int, drop: int, busy: int = 0, retry_after: str = "", only: str = ""
    ) -> None:
        """`busy`: answer the first `busy` requests 503 with `retry_after`, not passing them on."""
        self.upstream, self.drop, self.seen, self.dropped, self.only = upstream, drop, 0, 0, only
        self.busy, self.retry_after = busy, retry_after
        self.times: list[float] = []  # when each request came
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = dict(line.split(": ", 1) for line in lines[1:])
                length = int(headers.get("Content-Length", "0"))
                while len(body) < length:
                    body += connection.recv(65536)
                self.times.append(time.monotonic())
                if len(self.times) <= self.busy:
                    busy = "busy\n"
                    connection.sendall(
                        f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {self.retry_after}\r\n"
                        f"Content-Type: text/plain\r\nContent-Length: {len(busy)}\r\nConnection: close\r\n\r\n{busy}".encode()
                    )
                    continue
                upstream = HTTPConnection("127.0.0.1", self.upstream, timeout=30)
                headers.pop("Host", None)
                upstream.request(method, path, body, headers)
                answer = upstream.getresponse()
                content = answer.read()
                self.seen += 1
                if self.dropped < self.drop and self.only in ("", method):
                    self.dropped += 1
                    continue  # the server did what was asked; its answer is lost
                out = f"HTTP/1.1 {answer.status} {answer.reason}\r\n"
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        out += f"{name}: {value}\r\n"
                out += f"Content-Length: {len(content)}\r\nConnection: close\r\n\r\n"
                connection.sendall(out.encode("latin-1") + content)

    def close(self) -> None:
        self.listener.close()


def test_a_publish_whose_answers_are_lost_is_retried_and_stored_once(server):
    proxy = DroppingProxy(server.port, drop=2)
    try:
        done = atommq("publish", f"http://127.0.0.1:{proxy.port}/atommq/feed=jobs", "--text", "once")
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert proxy.seen == 3
    items = stored(feed_url(server))
    assert [(i["id"], i["content_text"]) for i in items] == [(done.stdout.decode().strip(), "once")]


def test_publish_exit_codes_say_what_to_do(server, tmp_path):
    refused = atommq("publish", feed_url(server, "bad%20name"), "--text", "x")
    assert refused.returncode == EXIT_REFUSED and b"is not allowed" in refused.stderr
    assert refused.stderr.count(b"\n") == 1
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    started = time.monotonic()
    down = atommq("publish", f"http://127.0.0.1:{port}/atommq/feed=jobs", "--text", "x", "--retry-for", "2")
    assert down.returncode == EXIT_TEMPFAIL and b"gave up after 2 s" in down.stderr
    assert time.monotonic() - started < 20
    usage = atommq("publish", feed_url(server))
    assert usage.returncode == 2 and b"--text" in usage.stderr


def test_a_login_from_the_environment_or_netrc_and_a_refused_one(tmp_path):
    users = users_file(tmp_path, "cron", "alice")
    ini = tmp_path / "atommq.ini"
    ini.write_text(f"[atommq]\nusers_file = {users}\n[publish]\njobs = cron\n[read]\njobs = alice\n")
    server = InProcess(tmp_path, {"ATOMMQ_CONFIG": str(ini)})
    try:
        url = feed_url(server)
        home = tmp_path / "home"
        home.mkdir()
        env = {"HOME": str(home), "ATOMMQ_PASSWORD": "cron-password"}
        done = atommq("publish", url, "--text", "x", "--user", "cron", env=env)
        assert done.returncode == 0, done.stderr
        anonymous = atommq("publish", url, "--text", "x", env={"HOME": str(home)}, stdin=b"")
        assert anonymous.returncode == EXIT_NOPERM and b"401" in anonymous.stderr
        (home / ".netrc").write_text("machine 127.0.0.1 login alice password alice-password\n")
        (home / ".netrc").chmod(0o600)
        read = atommq("consume", url, "--state", str(tmp_path / "cursor"), env={"HOME": str(home)})
        assert (read.returncode, read.stdout) == (0, b"x\n"), read.stderr
        wrong = atommq(
            "consume",
            url,
            "--state",
            str(tmp_path / "c2"),
            "--user",
            "alice",
            env={"HOME": "/nonexistent", "ATOMMQ_PASSWORD": "nope"},
        )
        assert wrong.returncode == EXIT_NOPERM
    finally:
        server.stop()


def test_the_client_verbs_import_nothing_of_the_servers(server, tmp_path):
    """They run on a box with a bare Python: no dataset, SQLAlchemy, database driver or lxml."""
    url = feed_url(server)
    probe = (
        "import sys; from atommq.cli import main; "
        f"assert main(['publish', {url!r}, '--text', 'x', '--quiet']) == 0; "
        f"assert main(['consume', {url!r}, '--state', 'cursor']) == 0; "
        f"assert main(['consume', {url!r}, '--name', 'probe']) == 0; "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'dataset', 'sqlalchemy', 'psycopg', 'pymysql', 'lxml', 'flup'}); "
        "assert not heavy, heavy"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr


def test_pip_install_gives_an_atommq_command_whose_client_needs_no_server_dependency(server, tmp_path):
    """`pip install .` without the dependencies: the client verbs still work."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    source = tmp_path / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".git", "__pycache__", ".venv", "build", "*.egg-info")
    )
    installed = subprocess.run(
        [str(venv / "bin" / "python3"), "-m", "pip", "install", "--quiet", "--no-deps", str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr
    command = str(venv / "bin" / "atommq")
    url = feed_url(server)
    sent = subprocess.run([command, "publish", url, "--text", "installed"], capture_output=True, cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    got = subprocess.run([command, "consume", url, "--state", "cursor"], capture_output=True, cwd=tmp_path)
    assert (got.returncode, got.stdout) == (0, b"installed\n"), got.stderr


def test_tail_shows_the_newest_messages_a_line_each_and_follows(server, tmp_path):
    url = feed_url(server)
    (tmp_path / "blob").write_bytes(b"\0\1\2")
    publish(url, "first")
    atommq("publish", url, "--text", "second line one\nline two", "--title", "titled")
    atommq("publish", url, str(tmp_path / "blob"))
    ids = [i["id"] for i in stored(url)]
    lines = atommq("tail", url, "-n", "2").stdout.decode().splitlines()
    assert [line.split("  ")[1:] for line in lines] == [
        ["titled", ids[1]],
        ["[application/octet-stream, 3 bytes]", ids[2]],
    ]
    following = start("tail", "-f", "-n", "0", url, cwd=tmp_path, stdout=subprocess.PIPE)
    try:
        time.sleep(1)
        newest = publish(url, "a new one\nand more")
        assert following.stdout is not None
        assert following.stdout.readline().decode().split("  ")[1:] == ["a new one", newest + "\n"]
    finally:
        following.kill()
        following.wait()


def test_the_readmes_exit_codes_are_the_commands():
    from atommq import client

    readme = (ROOT / "README.md").read_text("utf-8").partition("**Exit codes**")[2].split("\n\n")[1]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", readme, re.M)}
    assert documented == {value for name, value in vars(client).items() if name.startswith("EXIT_")}


def test_https_checks_the_certificate_and_trusts_the_one_given_with_cacert(tmp_path):
    need(shutil.which("openssl") is not None, "needs openssl to make a certificate")
    pem = tmp_path / "server.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(pem),
            "-out",
            str(pem),
        ],
        check=True,
        capture_output=True,
    )
    server = InProcess(tmp_path, {}, certificate=pem)
    try:
        url = f"https://127.0.0.1:{server.port}/atommq/feed=jobs"
        started = time.monotonic()
        untrusted = atommq("publish", url, "--text", "x")
        assert untrusted.returncode == 2 and b"--cacert" in untrusted.stderr, untrusted.stderr
        assert time.monotonic() - started < 10, "a certificate that is not trusted is not retried"
        trusted = atommq("publish", url, "--text", "x", "--cacert", str(pem))
        assert trusted.returncode == 0, trusted.stderr
        read = atommq("consume", url, "--state", str(tmp_path / "cursor"), "--cacert", str(pem))
        assert read.stdout == b"x\n"
    finally:
        server.stop()


@pytest.mark.parametrize(
    "max_wait, interval, quiet",
    [
        ("0", "0.5", 1.2),  # a server that cannot wait: polled (304s) every --interval
        ("1", "60", 3.5),  # waits of 1 s that run out: asked again at once, not after --interval
    ],
    ids=["cannot-wait", "waits-run-out"],
)
def test_follow_gets_a_new_message_soon_from_a_server_that_cannot_wait_or_waits_briefly(
    tmp_path, max_wait, interval, quiet
):
    server = InProcess(tmp_path, {"ATOMMQ_MAX_WAIT": max_wait})
    consumer = None
    try:
        url = feed_url(server)
        publish(url, "before")
        consumer = start(
            "consume",
            url,
            "--state",
            "cursor",
            "--follow",
            "--interval",
            interval,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
        )
        assert consumer.stdout is not None
        assert consumer.stdout.readline() == b"before\n"
        time.sleep(quiet)  # nothing new meanwhile
        published = time.monotonic()
        publish(url, "after")
        assert consumer.stdout.readline() == b"after\n"
        assert time.monotonic() - published < 5
    finally:
        if consumer is not None:
            consumer.send_signal(signal.SIGTERM)
            assert consumer.wait(timeout=10) == 0
        server.stop()


def test_a_url_that_is_not_atommqs_gets_one_clear_line(tmp_path):
    """A web page where the feed should be (a wrong path on the right host, say)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>welcome</html>")

        def log_message(self, *args: Any) -> None:
            pass

    page = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{page.server_address[1]}/atommq/feed=jobs"
        for verb in (["consume", url, "--state", str(tmp_path / "c")], ["tail", url]):
            done = atommq(*verb)
            assert done.returncode == EXIT_REFUSED and b"not a JSON Feed page (text/html)" in done.stderr
            assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr
    finally:
        page.shutdown()
        page.server_close()


def test_a_killed_consumers_command_still_holds_the_state_file_until_it_ends(server, tmp_path):
    """The command inherits the lock: the next run does not process alongside an orphan."""
    url = feed_url(server)
    publish(url, "one")
    hold = "import sys, time; sys.stdin.read(); time.sleep(2); open('done', 'w')"
    first = start("consume", url, "--state", "cursor", "--", sys.executable, "-c", hold, cwd=tmp_path)
    time.sleep(1)
    first.kill()
    first.wait()
    assert atommq("consume", url, "--state", "cursor", cwd=tmp_path).returncode == EXIT_LOCKED
    waited = atommq("consume", url, "--state", "cursor", "--wait-lock", cwd=tmp_path)
    assert (tmp_path / "done").exists(), "it ran before the orphaned command ended"
    assert (waited.returncode, waited.stdout) == (0, b"one\n")  # given again: it was never saved


def test_a_password_is_asked_at_a_terminal_and_never_read_from_a_pipe(tmp_path):
    import pty

    users = users_file(tmp_path, "cron")
    ini = tmp_path / "atommq.ini"
    ini.write_text(f"[atommq]\nusers_file = {users}\n[publish]\njobs = cron\n")
    server = InProcess(tmp_path, {"ATOMMQ_CONFIG": str(ini)})
    try:
        url = feed_url(server)
        env = {"HOME": str(tmp_path)}  # no ~/.netrc, no ATOMMQ_PASSWORD
        # No terminal (a new session has none; cron's case): a clear line, nothing read from stdin.
        alone = subprocess.run(
            [sys.executable, "-m", "atommq", "publish", url, "-", "--user", "cron"],
            input=b"the message",
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            start_new_session=True,
        )
        assert alone.returncode == 2 and b"ATOMMQ_PASSWORD" in alone.stderr
        # At a terminal: asked there, while the message comes from a pipe.
        controller, terminal = pty.openpty()
        # A session leader that opens a terminal by its name makes it its controlling one (Linux).
        takes_terminal = (
            "import os, sys; os.open(sys.argv[1], os.O_RDWR); os.execv(sys.executable, sys.argv[2:])"
        )
        asked = subprocess.Popen(
            [sys.executable, "-c", takes_terminal, os.ttyname(terminal), sys.executable, "-m", "atommq"]
            + ["publish", url, "-", "--user", "cron"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            start_new_session=True,
        )
        assert asked.stdin is not None and asked.stdout is not None
        asked.stdin.write(b"from a pipe")
        asked.stdin.close()
        prompt, deadline = b"", time.monotonic() + 30
        while b"Password for cron" not in prompt:
            assert time.monotonic() < deadline, f"no password prompt at the terminal: {prompt!r}"
            if select.select([controller], [], [], 1)[0]:
                prompt += os.read(controller, 1024)
        os.write(controller, b"cron-password\n")
        message_id = asked.stdout.read().decode().strip()
        assert asked.wait(timeout=30) == 0
        os.close(controller)
        os.close(terminal)
        assert [(i["id"], i["content_text"]) for i in stored(url)] == [(message_id, "from a pipe")]
    finally:
        server.stop()


def test_a_busy_server_is_asked_again_after_its_retry_after_and_given_up_on_in_time(server):
    proxy = DroppingProxy(server.port, drop=0, busy=1, retry_after="2")
    try:
        url = f"http://127.0.0.1:{proxy.port}/atommq/feed=jobs"
        done = atommq("publish", url, "--text", "later")
        assert done.returncode == 0, done.stderr
        assert len(proxy.times) == 2 and proxy.times[1] - proxy.times[0] >= 1.9
        proxy.busy, proxy.retry_after = 10, "30"  # longer than it may try
        started = time.monotonic()
        given_up = atommq("publish", url, "--text", "never", "--retry-for", "5")
        assert given_up.returncode == EXIT_TEMPFAIL and b"503 busy" in given_up.stderr
        assert time.monotonic() - started < 4, "it waited although the wait would outlast --retry-for"
    finally:
        proxy.close()
    assert [i["content_text"] for i in stored(feed_url(server))] == ["later"]


def test_a_cursor_whose_message_was_removed_stops_consume_with_exit_4(tmp_path):
    import sqlite3

    server = InProcess(tmp_path, {})
    try:
        url = feed_url(server)
        ids = [publish(url, f"m{n}") for n in range(4)]
        (tmp_path / "cursor").write_text(ids[0] + "\n")
        with sqlite3.connect(tmp_path / "atommq.db") as db:  # retention's work: the oldest two go
            db.execute("DELETE FROM atommq_messages WHERE seq <= 2")
        done = atommq("consume", url, "--state", "cursor", cwd=tmp_path)
        assert done.returncode == EXIT_GAP and b"1 message after it went with them unread" in done.stderr
        skipped = atommq("consume", url, "--state", "cursor", "--on-gap=skip", cwd=tmp_path)
        assert (skipped.returncode, skipped.stdout) == (0, b"m2\nm3\n")
    finally:
        server.stop()


# Named consumers: `consume --name NAME` keeps its cursor on the server (URL/consumer=NAME).


def post(url: str, texts: list[str]) -> list[str]:
    """Publish each text (a plain POST: quicker than a publish process each); their ids."""
    ids = []
    for text in texts:
        request = urllib.request.Request(url, data=text.encode(), headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request) as answer:
            ids.append("urn:uuid:" + answer.headers["ETag"].strip('"'))
    return ids


def consumer_at(url: str, name: str) -> str | None:
    """Where the server says consumer NAME is (a plain GET of it); None when it has none."""
    try:
        with urllib.request.urlopen(f"{url}/consumer={name}") as answer:
            return str(answer.read().decode().strip())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def move(url: str, name: str, message_id: str) -> None:
    """Move consumer NAME to a message, unconditionally: another run, or a deliberate replay."""
    request = urllib.request.Request(
        f"{url}/consumer={name}",
        data=message_id.encode(),
        method="PUT",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request).close()


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never came"
        time.sleep(0.02)


# A COMMAND that logs as LOGGER does, then says it started (a file named after its consume
# run's pid) and waits for a file 'go' before it ends.
GATED = LOGGER + (
    "\nopen(f'started.{os.getppid()}', 'w').close()"
    "\nimport time\nwhile not os.path.exists('go'): time.sleep(0.01)"
)


def test_a_named_consumer_keeps_its_cursor_on_the_server_and_the_next_run_resumes_after_it(server, tmp_path):
    url = feed_url(server)
    ids = post(url, ["m0", "m1", "m2"])
    work = tmp_path / "work"
    work.mkdir()
    done = atommq("consume", url, "--name", "billing", "--", sys.executable, "-c", LOGGER, cwd=work)
    assert done.returncode == 0, done.stderr
    assert logged(work) == [(i, f"m{n}".encode()) for n, i in enumerate(ids)]
    assert consumer_at(url, "billing") == ids[-1]
    assert sorted(p.name for p in work.iterdir()) == ["log"], "no state or lock file here"
    more = post(url, ["m3", "m4"])
    again = atommq("consume", url, "--name", "billing", "--", sys.executable, "-c", LOGGER, cwd=work)
    assert again.returncode == 0, again.stderr
    assert [i for i, _ in logged(work)] == ids + more
    assert consumer_at(url, "billing") == more[-1]
    # Another name is a consumer of its own, from the first message.
    other = atommq("consume", url, "--name", "audit", cwd=work)
    assert (other.returncode, other.stdout) == (0, b"m0\nm1\nm2\nm3\nm4\n")
    assert consumer_at(url, "billing") == more[-1]


def test_a_failing_command_leaves_the_named_consumer_before_its_message(server, tmp_path):
    url = feed_url(server)
    ids = post(url, ["good", "bad", "after"])
    failing = "import sys; body = sys.stdin.read(); sys.exit(3 if body == 'bad' else 0)"
    done = atommq("consume", url, "--name", "w", "--", sys.executable, "-c", failing, cwd=tmp_path)
    assert done.returncode == EXIT_COMMAND_FAILED
    assert b"exited with 3 on message " + ids[1].encode() + b"; the consumer 'w' still points before it" in (
        done.stderr
    )
    assert consumer_at(url, "w") == ids[0]
    retried = atommq("consume", url, "--name", "w", cwd=tmp_path)
    assert (retried.returncode, retried.stdout) == (0, b"bad\nafter\n")
    assert consumer_at(url, "w") == ids[2]


def test_a_named_consumer_moved_by_another_stops_the_run_with_exit_3_and_is_never_overwritten(
    server, tmp_path
):
    url = feed_url(server)
    ids = post(url, ["m0", "m1", "m2", "m3"])
    move(url, "w", ids[0])
    run = start(
        "consume", url, "--name", "w", "--", sys.executable, "-c", GATED, cwd=tmp_path, stderr=subprocess.PIPE
    )
    try:
        wait_for(tmp_path / f"started.{run.pid}")  # it has m1 in hand
        move(url, "w", ids[3])  # meanwhile, another run with this name
        (tmp_path / "go").touch()
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == EXIT_LOCKED, stderr
    assert stderr.count(b"\n") == 1
    assert f"another run with this name moved the consumer 'w' (now {ids[3]})".encode() in stderr
    assert [i for i, _ in logged(tmp_path)] == [ids[1]]
    assert consumer_at(url, "w") == ids[3], "it was moved back"


def test_two_runs_started_together_with_one_name_one_stops_and_the_cursor_never_moves_back(server, tmp_path):
    url = feed_url(server)
    ids = post(url, [f"m{n}" for n in range(12)])
    runs = [
        start(
            "consume",
            url,
            "--name",
            "shared",
            "--",
            sys.executable,
            "-c",
            GATED,
            cwd=tmp_path,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    positions = []
    try:
        for run in runs:  # both have the first message in hand: they race to save it
            wait_for(tmp_path / f"started.{run.pid}")
        (tmp_path / "go").touch()
        while any(run.poll() is None for run in runs):
            at = consumer_at(url, "shared")
            if at is not None:
                positions.append(ids.index(at))
            time.sleep(0.005)
        errors = [run.communicate(timeout=30)[1] for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    codes = [run.returncode for run in runs]
    assert sorted(codes) == [0, EXIT_LOCKED], errors
    lost = errors[codes.index(EXIT_LOCKED)]
    assert lost.count(b"\n") == 1 and b"another run with this name moved the consumer 'shared'" in lost
    assert positions == sorted(positions), "the cursor moved back"
    assert consumer_at(url, "shared") == ids[-1]
    assert {i for i, _ in logged(tmp_path)} == set(ids), "a message was never processed"


def test_a_named_consumer_whose_save_answer_is_lost_goes_on_without_processing_twice(server, tmp_path):
    """The retried PUT finds the consumer where its lost attempt put it (412): that is not
    another run."""
    ids = post(feed_url(server), ["m0", "m1", "m2"])
    proxy = DroppingProxy(server.port, drop=2, only="PUT")
    try:
        url = f"http://127.0.0.1:{proxy.port}/atommq/feed=jobs"
        done = atommq("consume", url, "--name", "w", "--", sys.executable, "-c", LOGGER, cwd=tmp_path)
    finally:
        proxy.close()
    assert done.returncode == 0, done.stderr
    assert proxy.dropped == 2
    assert [i for i, _ in logged(tmp_path)] == ids
    assert consumer_at(feed_url(server), "w") == ids[-1]


def test_from_now_with_a_new_name_starts_after_the_newest_message(server, tmp_path):
    url = feed_url(server)
    [old] = post(url, ["old"])
    first = atommq("consume", url, "--name", "late", "--from-now", cwd=tmp_path)
    assert (first.returncode, first.stdout) == (0, b"")
    assert consumer_at(url, "late") == old
    post(url, ["new"])
    assert atommq("consume", url, "--name", "late", "--from-now", cwd=tmp_path).stdout == b"new\n"


def test_a_named_consumer_whose_message_was_removed_stops_with_exit_4(tmp_path):
    import sqlite3

    server = InProcess(tmp_path, {})
    try:
        url = feed_url(server)
        ids = post(url, [f"m{n}" for n in range(4)])
        move(url, "w", ids[0])
        with sqlite3.connect(tmp_path / "atommq.db") as db:  # retention's work: the oldest two go
            db.execute("DELETE FROM atommq_messages WHERE seq <= 2")
        done = atommq("consume", url, "--name", "w", cwd=tmp_path)
        assert done.returncode == EXIT_GAP and b"1 message after it went with them unread" in done.stderr
        assert done.stderr.count(b"\n") == 1
        assert consumer_at(url, "w") == ids[0]
        skipped = atommq("consume", url, "--name", "w", "--on-gap=skip", cwd=tmp_path)
        assert (skipped.returncode, skipped.stdout) == (0, b"m2\nm3\n")
        assert consumer_at(url, "w") == ids[3]
    finally:
        server.stop()


def test_consume_takes_exactly_one_of_state_and_name():
    url = "http://127.0.0.1:9/atommq/feed=jobs"  # never asked
    for args, said in [
        ([], b"one of the arguments --state --name is required"),
        (["--state", "c", "--name", "w"], b"not allowed with argument"),
        (["--name", ".w"], b"'.w' is not a consumer name"),
        (["--name", "w", "--wait-lock"], b"--wait-lock goes with --state"),
    ]:
        done = atommq("consume", url, *args)
        assert done.returncode == 2 and said in done.stderr, (args, done.stderr)


def test_a_named_consumer_without_the_consume_right_stops_at_its_first_save(tmp_path):
    users = users_file(tmp_path, "alice", "bob")
    ini = tmp_path / "atommq.ini"
    ini.write_text(
        f"[atommq]\nusers_file = {users}\n[publish]\njobs = @anyone\n[read]\njobs = @anyone\n"
        "[consume]\njobs = alice\n"
    )
    server = InProcess(tmp_path, {"ATOMMQ_CONFIG": str(ini)})
    try:
        url = feed_url(server)
        ids = post(url, ["m0", "m1"])
        bob = atommq("consume", url, "--name", "w", "--user", "bob", env={"ATOMMQ_PASSWORD": "bob-password"})
        assert bob.returncode == EXIT_NOPERM and b"403" in bob.stderr, bob.stderr
        assert bob.stdout == b"m0\n" and consumer_at(url, "w") is None
        alice = atommq(
            "consume", url, "--name", "w", "--user", "alice", env={"ATOMMQ_PASSWORD": "alice-password"}
        )
        assert (alice.returncode, alice.stdout) == (0, b"m0\nm1\n")
        assert consumer_at(url, "w") == ids[-1]
    finally:
        server.stop()


def test_follow_with_a_name_saves_each_message_on_the_server_and_sigterm_ends_it_cleanly(server, tmp_path):
    url = feed_url(server)
    [first] = post(url, ["before"])
    consumer = start("consume", url, "--name", "w", "--follow", cwd=tmp_path, stdout=subprocess.PIPE)
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline() == b"before\n"
        time.sleep(1)  # it now waits (long polling)
        [second] = post(url, ["after"])
        assert consumer.stdout.readline() == b"after\n"
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=10) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer_at(url, "w") == second != first
