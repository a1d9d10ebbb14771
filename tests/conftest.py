"""Fixtures: one client that speaks to AtomMQ through any transport a user has.

`client` (and `make_client`) is parametrized over transports:
  wsgi      the app in-process, wrapped in wsgiref.validate (PEP 3333 conformance checked)
  cgi       the real cgi-bin/atommq.cgi, run as a subprocess per request, as a web server does
  fastcgi   the real cgi-bin/atommq.fcgi, serving a unix socket, spoken to over FastCGI
  KIND@DB   the same on PostgreSQL or MariaDB (a database of its own per client)
  lighttpd-fastcgi, apache-cgi, ...  the real web servers, from the samples in deploy/
  gunicorn, waitress  real WSGI servers from PyPI running atommq.wsgi (not among the defaults:
            test_wsgi_servers.py names them)
Which of them a test runs on follows from what it is about (pytest_generate_tests, below).
Each client has its own SQLite file and log file in tmp_path. Every Atom or AtomPub document a
client receives is validated against the RFC schemas and the feed validators' rules (conformance.py);
every error must be one line of text.
"""

import io
import os
import shutil
import socket as socketlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from wsgiref.validate import validator

import pytest
from lxml import etree

import databases
import fastcgi_client
import webservers
import wsgi_servers
from conformance import validate

ROOT = Path(__file__).resolve().parent.parent
CGI_SCRIPT = ROOT / "cgi-bin" / "atommq.cgi"
FCGI_SCRIPT = ROOT / "cgi-bin" / "atommq.fcgi"
PREFIX = "/atommq"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
# The transports where the client speaks HTTP to a real server in front of AtomMQ.
HTTP_SERVERS = (*webservers.KINDS, *wsgi_servers.KINDS)

ATOM_NS = {"a": "http://www.w3.org/2005/Atom", "app": "http://www.w3.org/2007/app"}


def need(condition: bool, reason: str) -> None:
    """Skip when something the test needs is missing; in CI, fail instead."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI needs this, and it is missing: {reason}")
        pytest.skip(reason)


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def xml(self) -> Any:
        return etree.fromstring(self.body)

    def entries(self) -> list[Any]:
        return self.xml().findall("a:entry", ATOM_NS)

    def ids(self) -> list[str]:
        return [e.findtext("a:id", namespaces=ATOM_NS) for e in self.entries()]

    def link(self, rel: str) -> str | None:
        found = self.xml().find(f"a:link[@rel='{rel}']", ATOM_NS)
        return None if found is None else found.get("href")


def parse_cgi_output(output: bytes) -> Response:
    head, separator, body = output.partition(b"\r\n\r\n")
    if not separator:
        head, _, body = output.partition(b"\n\n")
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(headers.pop("status", "200").split()[0])
    return Response(status, headers, body)


# What AtomMQ answers in documents of its own, which every test checks (conformance.validate).
DOCUMENT_TYPES = (
    "application/atom",
    "application/atomsvc",
    "application/feed+json",
    "application/json",
    "text/html",
)


@dataclass
class Client:
    """Speaks to AtomMQ mounted at /atommq on http://localhost, through one transport."""

    transport: str  # KIND, or KIND@DATABASE for a PostgreSQL or MariaDB variant
    tmp: Path
    settings: dict[str, str] = field(default_factory=dict)
    _app: Any = None
    _server: Any = None
    _database: Any = None
    _store: Any = None
    _log: Any = None

    @property
    def kind(self) -> str:
        return self.transport.partition("@")[0]

    @property
    def database(self) -> str:
        return self.transport.partition("@")[2] or "sqlite"

    @property
    def database_url(self) -> str:
        if "ATOMMQ_DATABASE_URL" in self.settings:  # a test's own, e.g. another head's database
            return self.settings["ATOMMQ_DATABASE_URL"]
        if self.database == "sqlite":
            return f"sqlite:///{self.db_path}"
        if self._database is None:
            reason = databases.missing(self.database)
            need(reason is None, str(reason))
            self._database = databases.Database(self.database)
        return str(self._database.url)

    @property
    def env(self) -> dict[str, str]:
        return {
            "ATOMMQ_DATABASE_URL": self.database_url,
            "ATOMMQ_LOG_FILE": str(self.tmp / "atommq.log"),
            **self.settings,
        }

    @property
    def db_path(self) -> Path:
        assert self.database == "sqlite", "db_path is a SQLite file's"
        return self.web_server.db_path if self.kind in webservers.KINDS else self.tmp / "atommq.db"

    @property
    def log(self) -> str:
        path = self.web_server.log_path if self.kind in webservers.KINDS else self.tmp / "atommq.log"
        return path.read_text("utf-8") if path.exists() else ""

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        send_length: bool = True,
        server_may_refuse: bool = False,
        content_length: str | None = None,
        environ: dict[str, str] | None = None,
    ) -> Response:
        """`target` is a path under the prefix (/feed=x?start_after=y) or an absolute URL.
        `server_may_refuse`: a real web server may answer a URL it finds malformed itself, with
        its own error page, before AtomMQ sees the request. `content_length`: the CONTENT_LENGTH
        the gateway announces whatever the body's length (a truncated upload); not for the web
        servers, which check it themselves (send those a raw request)."""
        parts = urlsplit(target)
        path = unquote(parts.path, errors="surrogateescape")  # bytes that are not UTF-8 pass as-is
        if parts.scheme:
            assert path.startswith(PREFIX), f"{target} is not under {PREFIX}"
            path = path[len(PREFIX) :]
        meta = fastcgi_client.meta_variables(method, path, parts.query, headers, body if send_length else b"")
        meta["REQUEST_URI"] = PREFIX + target if not parts.scheme else parts.path  # as the client sent it
        if content_length is not None:
            assert self.kind not in HTTP_SERVERS, "a web server checks Content-Length itself"
            meta["CONTENT_LENGTH"] = content_length
        if environ:  # what a web server adds itself, e.g. REMOTE_USER after its own login
            assert self.kind not in HTTP_SERVERS, "a web server sets its variables itself"
            meta.update(environ)
        if self.kind in HTTP_SERVERS:
            response = self._via_http(method, path, parts.query, headers or {}, body, send_length)
        else:
            response = getattr(self, "_via_" + self.kind)(meta, body)
        if not (server_may_refuse and self.kind in HTTP_SERVERS):
            base = self.settings.get("ATOMMQ_BASE_URL", "http://localhost" + PREFIX).rstrip("/")
            self.check(method, response, base + path + (f"?{parts.query}" if parts.query else ""))
        return response

    def leave(self, target: str, after: float) -> None:
        """GET `target` as a client that goes away: the connection is closed `after` seconds,
        unanswered (through a FastCGI socket or a web server: what has a connection)."""
        if self.kind in HTTP_SERVERS:
            address: Any = ("127.0.0.1", self.web_server.port)
            data = f"GET {PREFIX}{target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
        else:
            assert self.kind == "fastcgi", f"a {self.kind} request has no connection to close"
            address = str(self.fastcgi_server.socket)
            path, _, query = target.partition("?")
            params = fastcgi_client.meta_variables("GET", path, query)
            data = fastcgi_client.begin_request() + fastcgi_client.stream(
                fastcgi_client.PARAMS, fastcgi_client.encode_params(params)
            )
            data += fastcgi_client.stream(fastcgi_client.STDIN, b"")
        family = socketlib.AF_UNIX if isinstance(address, str) else socketlib.AF_INET
        with socketlib.socket(family, socketlib.SOCK_STREAM) as connection:
            connection.connect(address)
            connection.sendall(data)
            time.sleep(after)
            connection.setblocking(False)
            try:
                assert not connection.recv(1), "answered before it went away"
            except BlockingIOError:
                pass  # nothing to read: still unanswered, as it should be

    def get(self, target: str, **headers: str) -> Response:
        return self.request("GET", target, headers={k.replace("_", "-"): v for k, v in headers.items()})

    def post(
        self,
        target: str,
        body: bytes | str,
        content_type: str = "application/x-www-form-urlencoded",
        server_may_refuse: bool = False,
    ) -> Response:
        data = body.encode("utf-8") if isinstance(body, str) else body
        return self.request(
            "POST", target, data, {"Content-Type": content_type}, server_may_refuse=server_may_refuse
        )

    def publish(self, feed: str, text: str, title: str = "t") -> Response:
        entry = f"<entry><title>{title}</title><content>{text}</content></entry>"
        response = self.post(f"/feed={feed}", entry)
        assert response.status == 201, response.text
        return response

    def whole_feed(self, feed: str) -> list[str]:
        """Every message id of a feed, oldest first, following rel="next" from page to page."""
        ids, url = [], f"/feed={feed}"
        while url:
            page = self.get(url)
            assert page.status == 200, page.text
            ids += page.ids()
            url = page.link("next")
        return ids

    @staticmethod
    def check(method: str, response: Response, location: str | None = None) -> None:
        content_type = response.headers.get("content-type", "")
        if response.status == 304:
            assert response.body == b""
        elif response.status >= 400 and content_type.startswith("text/html"):
            # The one error a browser gets as a page: a feed not made yet, with the form to make it.
            assert response.status == 404 and b"created by its" in response.body, response.body
            if method != "HEAD":
                validate(content_type, response.body, location)
        elif response.status >= 400:
            assert content_type.startswith("text/plain"), content_type
            if method != "HEAD":
                assert response.body.endswith(b"\n") and response.body.count(b"\n") == 1, response.body
                assert b"Traceback" not in response.body
        elif method != "HEAD" and response.body and content_type.startswith(DOCUMENT_TYPES):
            # A message's own bytes (?format=raw, ?format=rendered: in a sandbox) are not ours.
            if not response.headers.get("content-security-policy", "").startswith("sandbox"):
                validate(content_type, response.body, location)

    def _via_wsgi(self, meta: dict[str, str], body: bytes) -> Response:
        if self._app is None:
            from atommq import config
            from atommq.app import make_app, open_store

            settings = config.load(self.env)
            self._store = open_store(settings)
            self._log = config.configure_logging(settings)
            self._app = validator(make_app(settings, self._log, store=self._store))
        environ: dict[str, Any] = {
            k: v.encode("utf-8", "surrogateescape").decode("latin-1") for k, v in meta.items()
        }
        environ.update(
            {
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": False,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
                # As gunicorn and mod_wsgi say: the input ends where the body does, so a body
                # sent without a Content-Length is read to its end.
                "wsgi.input_terminated": True,
            }
        )
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        result = self._app(environ, start_response)
        try:
            data = b"".join(result)
        finally:
            result.close()
        headers = {k.lower(): v for k, v in captured["headers"]}
        return Response(int(captured["status"].split()[0]), headers, data)

    def _via_cgi(self, meta: dict[str, str], body: bytes) -> Response:
        environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.env, **meta}
        done = subprocess.run([str(CGI_SCRIPT)], input=body, env=environ, capture_output=True, timeout=60)
        if done.stderr:
            (self.tmp / "cgi-stderr.log").open("ab").write(done.stderr)
        return parse_cgi_output(done.stdout)

    @property
    def fastcgi_server(self) -> "FastCGIServer":
        """The atommq.fcgi that this client's requests go to (started on first use)."""
        if self._server is None:
            # A short path: unix socket paths are limited to 107 bytes, tmp_path can be longer.
            self._server = FastCGIServer(Path(tempfile.mkdtemp(prefix="amq")) / "s", self.env, self.tmp)
        return self._server  # type: ignore[no-any-return]

    def stop_server(self) -> None:
        """Stop this client's server; the next request starts a new one on the same database."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _via_fastcgi(self, meta: dict[str, str], body: bytes) -> Response:
        stdout, _ = fastcgi_client.request(str(self.fastcgi_server.socket), meta, body)
        return parse_cgi_output(stdout)

    @property
    def web_server(self) -> webservers.WebServer | wsgi_servers.WSGIServer:
        """The lighttpd, Apache, gunicorn or waitress that this client's requests go through
        (started on first use). gunicorn and waitress run this checkout's atommq/ as the test
        runner, on the client's database and log file."""
        if self._server is None and self.kind in wsgi_servers.KINDS:
            reason = wsgi_servers.missing(self.kind)
            need(reason is None, str(reason))
            self._server = wsgi_servers.WSGIServer(self.kind, self.env, self.tmp)
        if self._server is None:
            python, app = _deployed_app()
            settings = dict(self.settings)
            if self.database != "sqlite":
                settings["ATOMMQ_DATABASE_URL"] = self.database_url
            self._server = webservers.WebServer(self.kind, python, app, settings)
        return self._server  # type: ignore[no-any-return]

    def _via_http(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes, send_length: bool
    ) -> Response:
        server = self.web_server
        target = (
            PREFIX
            + quote(path.encode("utf-8", "surrogateescape"), safe="/=;:@!$&'()*+,~")
            + (f"?{query}" if query else "")
        )
        # Host: localhost, as for the other transports, so that links are alike everywhere.
        connection = HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", "localhost")
            for name, value in headers.items():
                connection.putheader(name, value)
            if send_length and (body or method in ("POST", "PUT")):
                connection.putheader("Content-Length", str(len(body)))  # as curl -d '' does
            elif body:
                connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            if body and send_length:
                connection.send(body)
            elif body:
                connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            answer = connection.getresponse()
            data = answer.read()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        finally:
            connection.close()

    def close(self) -> None:
        from atommq.waiting import places_folder

        if self._server is not None or self._app is not None:  # the folder where its requests waited
            for uid in {os.getuid(), webservers.www_uid()}:
                shutil.rmtree(places_folder(self.database_url, uid), ignore_errors=True)
        self.stop_server()
        if self._store is not None:
            self._store.close()  # its pooled connections go before the database does
        for handler in self._log.handlers if self._log is not None else ():
            handler.close()
        if self._database is not None:
            self._database.drop()


class FastCGIServer:
    """The real atommq.fcgi, started by hand on a unix socket."""

    def __init__(self, socket: Path, env: dict[str, str], tmp: Path) -> None:
        self.socket = socket
        self.stderr = (tmp / "fcgi-stderr.log").open("wb")
        self.process = subprocess.Popen(
            [str(FCGI_SCRIPT), str(socket)], env={**os.environ, **env}, stderr=self.stderr
        )
        deadline = time.monotonic() + 20
        # The socket file appears at bind(), before listen(): wait until it takes a connection.
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"atommq.fcgi did not start: {(tmp / 'fcgi-stderr.log').read_text()}")
            time.sleep(0.02)

    def _listening(self) -> bool:
        with socketlib.socket(socketlib.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        # Killed, not asked to stop: flup looks for SIGTERM once a second, which cost every
        # test a second; and a kill loses nothing a client was told is stored (test_crash.py).
        self.process.kill()
        self.process.wait()
        self.stderr.close()
        shutil.rmtree(self.socket.parent, ignore_errors=True)


# Every transport a user has; ATOMMQ_TEST_TRANSPORTS=wsgi,fastcgi (say) runs fewer while you work.
DATABASE_VARIANTS = tuple(f"{kind}@{db}" for db in databases.KINDS for kind in ("wsgi", "fastcgi"))
ALL_TRANSPORTS = ("wsgi", "cgi", "fastcgi", *DATABASE_VARIANTS, *webservers.KINDS)
TRANSPORTS = tuple(os.environ.get("ATOMMQ_TEST_TRANSPORTS", ",".join(ALL_TRANSPORTS)).split(","))
SQLITE_TRANSPORTS = tuple(t for t in TRANSPORTS if "@" not in t)
# Which transports a test of `client` runs on is chosen by what it is about (pytest_generate_tests):
# - behaviour, the default: what AtomMQ does with what it is sent, which no transport changes
#   (what is stored, written out, refused): in-process, on every database;
# - @pytest.mark.http: an HTTP feature that a gateway or a web server could get wrong (a path's
#   encoding, the query string, a request header AtomMQ reads or a response header it sends,
#   HEAD, 304, a body's framing and limits, the prefix and host in links, an error's form):
#   through every gateway and web server on SQLite, and in-process on the other databases;
# - anything else (what only databases under concurrency show, say) names its transports with
#   @pytest.mark.parametrize("transport", [...]).
BEHAVIOUR = tuple(t for t in TRANSPORTS if t.partition("@")[0] == "wsgi")
HTTP = SQLITE_TRANSPORTS + tuple(t for t in BEHAVIOUR if "@" in t)
_DEPLOYED: list[tuple[Path, Path]] = []


def _deployed_app() -> tuple[Path, Path]:
    """The venv Python and the copy of the app that the web servers run (made once a session)."""
    reason = webservers.missing()
    need(reason is None, str(reason))
    if not _DEPLOYED:
        python = webservers.www_python()
        _DEPLOYED.append((python, webservers.deploy_app(python)))
    return _DEPLOYED[0]


@pytest.fixture(scope="session", autouse=True)
def _remove_deployed_app() -> Iterator[None]:
    yield
    for _, app in _DEPLOYED:
        shutil.rmtree(app, ignore_errors=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The transports of a test that does not name its own: HTTP or BEHAVIOUR (above)."""
    if "transport" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0]
        if "transport" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else names):
            return
    http = metafunc.definition.get_closest_marker("http") is not None
    metafunc.parametrize("transport", HTTP if http else BEHAVIOUR)


@pytest.fixture
def make_client(transport: str, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """make_client(page_size="3", ...) -> a Client whose server has those ATOMMQ_* settings."""
    clients: list[Client] = []

    def make(**settings: str) -> Client:
        folder = tmp_path / f"client{len(clients)}"
        folder.mkdir()
        env = {f"ATOMMQ_{k.upper()}": v for k, v in settings.items()}
        clients.append(Client(transport, folder, env))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()
