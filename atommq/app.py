"""make_app(config) -> a WSGI callable: routing, bodies, status codes, links, conditional GET.

HTTP lives here and only here; XML is `atom`'s business and SQL `store`'s. Mounted under a
prefix (SCRIPT_NAME, usually /atommq), it serves:

    GET|HEAD  /                      AtomPub service document, one collection per feed
    GET|HEAD  /feed=NAME             a page of the feed, oldest first (?start_after=ID, ?start_at=ID)
    POST      /feed=NAME             publish one message (the feed is created by its first)
    GET|HEAD  /feed=NAME/entry=ID    one message
    DELETE    /feed=NAME             delete the feed (users an [admin] section allows)
    GET|HEAD|PUT|DELETE  /feed=NAME/consumer=CNAME
                                     a named consumer: the id of the last message it processed
    GET|HEAD|POST  /feed=NAME/form   a browser's publish form, and what it sends
    GET|HEAD  /static/VERSION/FILE   the pages' style sheet and script

A browser (Accept: text/html first, or ?format=html) gets HTML pages (html.py, browser.py).
"""

import datetime
import hashlib
import logging
import random
import re
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes

from atommq import atom, browser, html, inbound, jsonfeed, retention
from atommq.config import Config
from atommq.errors import (
    TEXT_TYPE,
    AtomMQError,
    BadRequest,
    Forbidden,
    Gone,
    MethodNotAllowed,
    NotFound,
    StoreConflict,
    Unauthorized,
    plain_text,
)
from atommq.guard import Guard
from atommq.model import FEED_NAME, FEED_NAME_RULE, Consumer, Draft, Message, message_uuid
from atommq.session import Session
from atommq.store import Store
from atommq.waiting import Places, Watcher

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Response = tuple[str, list[tuple[str, str]], bytes]

FEED_TYPE = "application/atom+xml;type=feed"
SERVICE_TYPE = "application/atomsvc+xml"
# Feeds, entries and the service document come as Atom or JSON, by Accept (or ?format=).
VARY = ("Vary", "Accept")
# A publish that the database rolled back to break a deadlock is run again, this many times in all.
PUBLISH_ATTEMPTS = 3
# Retention in passing: one publish in PRUNE_EVERY to a feed that has a rule prunes it, at most
# PRUNE_IN_PASSING messages, after its answer is sent. Up to 3 removed per message published:
# more than come, so a feed is held at its limit without a cron job.
PRUNE_EVERY = 64
PRUNE_IN_PASSING = 200
# The environ key where a request leaves work for after its answer (_ThenRun).
_AFTER = "atommq.after"
# Most messages a page for a browser shows: a page a person reads, and scrolls.
HTML_PAGE_SIZE = 100
_HOST = re.compile(r"\A[A-Za-z0-9.\-]+(:[0-9]+)?\Z|\A\[[0-9A-Fa-f:.]+\](:[0-9]+)?\Z")


def now_utc() -> str:
    """RFC 3339 date-time in UTC with microseconds, as Atom's <updated> wants (RFC 4287 3.3)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_app(
    config: Config, log: logging.Logger, store: Store | None = None
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """Build the WSGI application, logging to `log` (config.configure_logging's, made once where
    the process starts), on `store` or the one `config` names."""
    return _App(config, log, store or open_store(config))


def open_store(config: Config, pool_size: int = 10) -> Store:
    """The configured store; the default SQLite folder is created on first use."""
    return Store(config, pool_size)


class _App:
    def __init__(self, config: Config, log: logging.Logger, store: Store) -> None:
        self.config = config
        self.log = log
        self.guard = Guard(config, log)
        self.store = store
        self._publishes = random.randrange(PRUNE_EVERY)
        self._publishes_lock = threading.Lock()
        places = Places(config.database_url, config.max_waiters, log.warning)
        self.watcher = Watcher(store.newest, places, log.warning)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # As sent: method names are case-sensitive (RFC 9110 9.1), and a web server's <Limit POST>
        # does not match "post".
        method = environ.get("REQUEST_METHOD", "GET")
        if self.log.isEnabledFor(logging.DEBUG):
            # Which headers the web server let through (names only): Apache, for one, hides
            # Authorization from CGI and FastCGI unless told (CGIPassAuth On).
            names = sorted(k[5:].replace("_", "-").title() for k in environ if k.startswith("HTTP_"))
            self.log.debug(
                "%s %r from %s, headers: %s",
                method,
                environ.get("PATH_INFO", ""),
                environ.get("REMOTE_ADDR", "?"),
                ", ".join(names),
            )
        head = method == "HEAD"
        try:
            status, headers, body = self.handle(environ, method)
        except AtomMQError as error:
            path = environ.get("PATH_INFO", "")
            if error.__cause__ is not None:  # a database failure: the log needs its reason
                self._report(environ, f"{method} {path!r}: {error.status}: {error.__cause__}\n")
            else:
                self.log.info("%s %r: %s %s", method, path, error.status, error.message)
            return plain_text(start_response, error.status, error.message, error.headers, head)
        except Exception:
            path = environ.get("PATH_INFO", "")
            self._report(environ, f"{method} {path!r} failed:\n{traceback.format_exc()}")
            line = "AtomMQ had an internal error; the server's error log has the details"
            return plain_text(start_response, "500 Internal Server Error", line, head=head)
        if not status.startswith("304"):
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        after = environ.pop(_AFTER, None)
        if after is not None:  # work that need not delay the answer: done once it is sent
            return _ThenRun([b""] if head else [body], after, lambda text: self._report(environ, text))
        return [b""] if head else [body]

    def _prune_now(self, name: str) -> retention.Limits | None:
        """The feed's retention limits if this publish prunes it once answered: one publish in
        PRUNE_EVERY per process, from a random start (a CGI process publishes once)."""
        limits = retention.limits_for(self.config.retention, name)
        if limits is None:
            return None
        with self._publishes_lock:
            self._publishes += 1
            return limits if self._publishes % PRUNE_EVERY == 0 else None

    def _report(self, environ: Environ, text: str) -> None:
        """An error and its reason go to log_file when one is set, else to the web server's log."""
        if self.config.log_file:
            self.log.error("%s", text)
        else:
            environ["wsgi.errors"].write(text)
            environ["wsgi.errors"].flush()

    def handle(self, environ: Environ, method: str) -> Response:
        body = inbound.read_body(environ, method, self.config.max_body_bytes)
        path = inbound.path_info(environ)
        if method not in ("GET", "HEAD") and (why := inbound.cross_site(environ, self._public_host)):
            raise Forbidden(
                f"refused: this {method} was sent by a page of another site ({why}); "
                "publish from AtomMQ's own page, or from a program"
            )
        if path in ("", "/"):
            _allow(method, ("GET", "HEAD"))
            return self.service(environ)
        if path == "/login":
            _allow(method, ("GET", "HEAD"))
            return self.login(environ)
        static = re.fullmatch(r"/static/([0-9a-f]{1,32})/([a-z.]+)", path)
        if static is not None:
            _allow(method, ("GET", "HEAD"))
            return browser.static_file(static.group(2), static.group(1))
        match = re.fullmatch(r"/feed=([^/]*)(?:/entry=([^/]+)|/consumer=([^/]*)|/(form))?/?", path)
        if match is None:
            raise NotFound(f"no resource at {path!r}; feeds are at /feed=NAME")
        name = match.group(1)
        if not FEED_NAME.match(name):
            raise BadRequest(f"feed name {name!r} is not allowed; use {FEED_NAME_RULE}")
        if match.group(2) is not None:
            _allow(method, ("GET", "HEAD"))
            self.guard.check(environ, "read", name)
            return self.entry(environ, name, match.group(2))
        if match.group(3) is not None:
            return self.consumer(environ, method, name, match.group(3), body)
        if match.group(4) is not None:
            return self.form(environ, method, name, body)
        # DELETE is offered only where an [admin] section says who may.
        _allow(
            method, ("GET", "HEAD", "POST", "DELETE") if self.config.access.admin else ("GET", "HEAD", "POST")
        )
        self.guard.check(environ, {"POST": "publish", "DELETE": "admin"}.get(method, "read"), name)
        if method == "POST":
            return self.publish(environ, name, body)
        if method == "DELETE":
            removed = self.store.delete_feed(name, datetime.datetime.now(datetime.UTC))
            self.log.warning("feed %r deleted, with its %d messages", name, removed)
            line = f"feed {name!r} deleted, with its {removed} message{'' if removed == 1 else 's'}\n"
            return "200 OK", [("Content-Type", TEXT_TYPE)], line.encode("utf-8")
        return self.feed(environ, name)

    def base(self, environ: Environ) -> str:
        if self.config.base_url:
            return self.config.base_url
        host = environ.get("HTTP_HOST", "")
        if not _HOST.match(host):
            host = environ.get("SERVER_NAME", "localhost")
            port = environ.get("SERVER_PORT", "")
            default = "443" if environ["wsgi.url_scheme"] == "https" else "80"
            if port and port != default:
                host += ":" + port
        script = _mount_point(environ).encode("latin-1")
        return f"{environ['wsgi.url_scheme']}://{host}{quote(script)}"

    def feed_href(self, environ: Environ, name: str) -> str:
        return f"{self.base(environ)}/feed={quote(name, safe='')}"

    @property
    def _public_host(self) -> str:
        return self.config.base_url.partition("://")[2].partition("/")[0]

    def static_href(self, environ: Environ) -> str:
        return f"{self.base(environ)}/static/{browser.static_version()}/"

    def entry_href(self, environ: Environ, message: Message) -> str:
        return f"{self.feed_href(environ, message.feed)}/entry={message_uuid(message.id)}"

    def service(self, environ: Environ) -> Response:
        json_type, _ = inbound.representation(environ)
        page = inbound.wants_html(environ)
        with self.store.transaction() as session:
            feeds = session.feeds()
            lags = session.consumers(datetime.datetime.now(datetime.UTC))
            held = session.held() if page else {}
        readable = set(self.guard.readable(environ, [f.name for f in feeds]))
        listed = [(f, self.feed_href(environ, f.name)) for f in feeds if f.name in readable]
        consumers: dict[str, list[Consumer]] = {}
        for lag in lags:
            consumers.setdefault(lag.feed, []).append(lag)
        if page:
            base = self.base(environ)
            return browser.page(html.render_service(listed, consumers, held, base, self.static_href(environ)))
        if json_type is not None:
            document = jsonfeed.render_service(listed, consumers)
            return "200 OK", [("Content-Type", "application/json"), VARY], document
        return "200 OK", [("Content-Type", SERVICE_TYPE), VARY], atom.render_service(listed, consumers)

    def login(self, environ: Environ) -> Response:
        """A browser's login (a page's "Log in to publish"): 401 until it sends one, then back to
        the feed's page. At /login, not under a feed: a browser then sends the login with every
        request under AtomMQ's prefix (RFC 7617 2.2: the 401's URL sets where it applies)."""
        try:
            feed = dict(parse_qsl(environ.get("QUERY_STRING", ""), max_num_fields=5)).get("feed", "")
        except ValueError:
            raise BadRequest("the query string is not valid; use /login?feed=NAME") from None
        if self.config.access.enabled and self.guard.caller(environ) is None:
            raise Unauthorized("log in with your AtomMQ user name and password")
        target = self.feed_href(environ, feed) if FEED_NAME.match(feed) else self.base(environ) + "/"
        return "303 See Other", [("Location", target), ("Content-Type", TEXT_TYPE)], b"logged in\n"

    def consumer(self, environ: Environ, method: str, feed: str, name: str, body: bytes) -> Response:
        """A named consumer: GET its last message's id (as text; as JSON with its lag), PUT one
        (If-Match / If-None-Match: *), DELETE it."""
        _allow(method, ("GET", "HEAD", "PUT", "DELETE"))
        if not FEED_NAME.match(name):
            raise BadRequest(f"consumer name {name!r} is not allowed; use {FEED_NAME_RULE}")
        self.guard.check(environ, "read" if method in ("GET", "HEAD") else "consume", feed)
        href = f"{self.feed_href(environ, feed)}/consumer={quote(name, safe='')}"
        if method == "DELETE":
            self.store.write(lambda session: session.remove_consumer(feed, name))
            return "204 No Content", [], b""
        status = "200 OK"
        json_type, _ = inbound.representation(environ)
        now = datetime.datetime.now(datetime.UTC)
        if method == "PUT":
            cursor = inbound.text_body(body).strip()
            if not cursor:
                raise BadRequest(f"PUT the id of the last message consumer {name!r} processed, as text")
            expect = inbound.precondition(environ)

            def move(session: Session) -> tuple[bool, Consumer]:
                # Read back in the same transaction: the answer (and its ETag) is this PUT's.
                made = session.move_consumer(feed, name, cursor, now_utc(), expect)
                return made, session.consumer(feed, name, now)

            made, found = self.store.write(move)
            status = "201 Created" if made else status
        else:
            with self.store.transaction() as session:
                found = session.consumer(feed, name, now)
        headers = [("Cache-Control", "no-cache"), VARY]
        if status.startswith("201"):
            headers.append(("Location", href))
        if json_type is not None:
            return status, [("Content-Type", "application/json"), *headers], jsonfeed.render_consumer(found)
        etag = f'"{message_uuid(found.last)}"'
        if method != "PUT" and _matches(environ, etag):
            return "304 Not Modified", [("ETag", etag), *headers], b""
        return status, [("Content-Type", TEXT_TYPE), ("ETag", etag), *headers], f"{found.last}\n".encode()

    def feed(self, environ: Environ, name: str) -> Response:
        try:
            return self._feed(environ, name)
        except Gone as gone:  # where the feed now starts, for the consumer that missed messages
            _, format_asked = inbound.representation(environ)
            first = self.feed_href(environ, name) + (f"?{format_asked}" if format_asked else "")
            gone.headers = (("Link", f'<{first}>; rel="first"'),)
            raise

    def _feed(self, environ: Environ, name: str) -> Response:
        start = inbound.cursor(environ.get("QUERY_STRING", ""), self.config.max_wait)
        if inbound.wants_html(environ):
            return self._feed_page(environ, name, start)
        if inbound.format_asked(environ) not in (None, "json", "atom"):
            raise BadRequest("a feed has format=atom, format=json or format=html")
        asked, wait = start.asked, start.wait
        preferred = inbound.prefer_wait(environ, self.config.max_wait)
        json_type, format_asked = inbound.representation(environ)
        href = self.feed_href(environ, name)
        self_href = f"{href}?{asked}" if asked else href
        applied: list[tuple[str, str]] = []
        if preferred is not None:  # the header over the query: a client's library sets it
            wait = preferred
        if wait > 0 and self._wait(name, start, wait) and preferred is not None:
            applied = [("Preference-Applied", f"wait={int(preferred)}")]
        with self.store.transaction() as session:
            position = session.locate(name, start.cursor, start.inclusive, start.last)
            tag = f"{position.version}|{self.config.page_size}|{self_href}|{json_type}"
            etag = '"' + hashlib.blake2b(tag.encode("utf-8"), digest_size=12).hexdigest() + '"'
            headers = [("ETag", etag), ("Cache-Control", "no-cache"), VARY, *applied]
            if _matches(environ, etag):
                return "304 Not Modified", headers, b""
            page = session.read(position, self.config.page_size, "atom" if json_type is None else "json")
        next_href = None
        if page.more:
            last = (atom.entry_id if json_type is None else jsonfeed.item_id)(page.entries[-1])
            next_href = f"{href}?start_after={quote(last, safe=':')}"
            next_href += f"&{format_asked}" if format_asked else ""
        if json_type is not None:
            document = jsonfeed.render_feed(page, f"{href}/entry=", self_href, next_href)
            return "200 OK", [("Content-Type", json_type), *headers], document
        document = atom.render_feed(page, self_href, next_href)
        return "200 OK", [("Content-Type", FEED_TYPE), *headers], document

    def _feed_page(self, environ: Environ, name: str, start: inbound.Start) -> Response:
        """A page of the feed for a browser: HTML_PAGE_SIZE messages, the publish form (or a
        link to log in for it) where the caller may publish. It never waits: its script does."""
        href = self.feed_href(environ, name)
        may, could = self.guard.may(environ, "publish", name)
        form = html.form_for(
            href, f"{self.base(environ)}/login?feed={quote(name, safe='')}", may, could, key=str(uuid.uuid4())
        )
        try:
            with self.store.transaction() as session:
                position = session.locate(name, start.cursor, start.inclusive, start.last)
                tag = f"{position.version}|{HTML_PAGE_SIZE}|{start.asked}|html|{may}|{could}|{self.static_href(environ)}"
                etag = '"' + hashlib.blake2b(tag.encode("utf-8"), digest_size=12).hexdigest() + '"'
                if _matches(environ, etag):
                    return (
                        "304 Not Modified",
                        [("ETag", etag), VARY, ("Cache-Control", "private, no-cache")],
                        b"",
                    )
                page = session.read(position, HTML_PAGE_SIZE, "html")
        except NotFound as missing:  # a feed before its first message, or deleted: a page to make it
            document = html.render_no_feed(
                name, missing.message, home=self.base(environ), static=self.static_href(environ), form=form
            )
            return browser.page(document, status=missing.status)
        next_href = None
        if page.more:
            last = html.article_uuid(page.entries[-1])
            next_href = f"{href}?start_after=urn:uuid:{last}"
        document = html.render_feed(
            page,
            feed_href=href,
            home=self.base(environ),
            static=self.static_href(environ),
            self_href=f"{href}?{start.asked}" if start.asked else href,
            next_href=next_href,
            newest_href=f"{href}?last={HTML_PAGE_SIZE}",
            form=form,
        )
        return browser.page(document, etag)

    def _wait(self, name: str, start: inbound.Start, seconds: float) -> bool:
        """Wait, holding no transaction, until the feed has a message after the cursor, or
        `seconds` pass; at once when it has one already. False: too many wait already in this
        server (max_waiters), and the answer is given at once."""
        with self.store.transaction() as session:
            position = session.locate(name, start.cursor, start.inclusive, start.last)
        if position.last_seq > position.after:
            return True
        return self.watcher.wait(name, position.last_seq, seconds) is not None

    def entry(self, environ: Environ, name: str, message_id: str) -> Response:
        asked = inbound.format_asked(environ)
        if asked in ("rendered", "raw") or inbound.wants_html(environ):
            with self.store.transaction() as session:
                message, _ = session.message(name, message_id)
            if asked == "rendered":
                return browser.rendered(message)
            if asked == "raw":
                return browser.raw(message)
            href, base = self.feed_href(environ, name), self.base(environ)
            document = html.render_entry(message, feed_href=href, home=base, static=self.static_href(environ))
            return browser.page(document)
        json_type, _ = inbound.representation(environ)
        with self.store.transaction() as session:
            message, stored = session.message(name, message_id, "atom" if json_type is None else "json")
        # Each representation its own tag: a cache must not answer one with the other.
        etag = f'"{message_uuid(message.id)}{"" if json_type is None else ".json"}"'
        headers = [("ETag", etag), VARY]
        if _matches(environ, etag):
            return "304 Not Modified", headers, b""
        if json_type is not None:
            entries_href = f"{self.feed_href(environ, name)}/entry="
            document = jsonfeed.render_item(message if stored is None else stored, entries_href)
            return "200 OK", [("Content-Type", json_type), *headers], document
        return "200 OK", [("Content-Type", atom.ENTRY_TYPE), *headers], atom.render_entry(message, stored)

    def form(self, environ: Environ, method: str, name: str, body: bytes) -> Response:
        """A browser's publish form (GET), and what it sends (POST): stored as any publish,
        then the browser is sent to the feed's newest messages (303)."""
        _allow(method, ("GET", "HEAD", "POST"))
        self.guard.check(environ, "publish", name)
        href = self.feed_href(environ, name)
        if method != "POST":
            document = html.render_form_page(
                name, href, self.base(environ), self.static_href(environ), key=str(uuid.uuid4())
            )
            return browser.page(document)
        draft, key = browser.form_draft(body)
        message, _, _ = self._store_message(environ, name, draft, key)
        location = f"{href}?last={HTML_PAGE_SIZE}#m-{message_uuid(message.id)}"
        return (
            "303 See Other",
            [("Location", location), ("Content-Type", TEXT_TYPE)],
            (f"published {message.id}\n".encode()),
        )

    def publish(self, environ: Environ, name: str, body: bytes) -> Response:
        draft = inbound.parse_message(body, environ.get("CONTENT_TYPE", ""))
        key = inbound.idempotency_key(environ)
        message, document, replayed = self._store_message(environ, name, draft, key)
        location = self.entry_href(environ, message)
        headers = [
            ("Content-Type", atom.ENTRY_TYPE),
            ("Location", location),
            ("Content-Location", location),
            ("ETag", f'"{message_uuid(message.id)}"'),
        ]
        if replayed:  # a retry: the answer of the first attempt, and nothing stored again
            headers.append(("Idempotent-Replayed", "true"))
        return "201 Created", headers, document

    def _store_message(
        self, environ: Environ, name: str, draft: Draft, key: str | None
    ) -> tuple[Message, bytes, bool]:
        """Store a message (retrying a deadlock), wake the feed's waiters, and leave pruning for
        after the answer where it is due: the message, its entry document, and whether it was
        a replay of one stored before with the same key."""

        def append(session: Session) -> tuple[Message, bytes, bool]:
            # Its <entry> and JSON item are made once, here, and stored with it.
            message, stored, replayed = session.append(
                name, draft, now=now_utc(), key=key, render=_renderings
            )
            # Before the commit: should this fail, the message is not stored either.
            return message, atom.render_entry(message, stored), replayed

        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                message, document, replayed = self.store.write(append)
                self.watcher.published()
                break
            except StoreConflict:
                # The database rolled the whole transaction back to break a deadlock: run it
                # again rather than hand the client an error.
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise
                self.log.info("publish to feed %r collided with another transaction; retrying", name)
        if not replayed and (limits := self._prune_now(name)) is not None:
            now = datetime.datetime.now(datetime.UTC)
            environ[_AFTER] = lambda: self.store.prune(name, limits, now, most=PRUNE_IN_PASSING)
        self.log.info("%s %s to feed %r", "replayed" if replayed else "published", message.id, name)
        return message, document, replayed


class _ThenRun:
    """An answer's body that runs `work` when the server closes it, after the body was sent
    (PEP 3333: close() is called once the response is written); a failure is reported."""

    def __init__(self, body: list[bytes], work: Callable[[], object], report: Callable[[str], None]) -> None:
        self._body, self._work, self._report = body, work, report

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            self._work()
        except Exception:
            self._report(f"pruning after a publish failed (the publish is stored):\n{traceback.format_exc()}")


def _renderings(message: Message) -> dict[str, bytes]:
    """What is stored with a message, made when it is published (schema.RENDERINGS)."""
    return {
        "atom": atom.entry_xml(message),
        "json": jsonfeed.stored_item(message),
        "html": html.stored_article(message),
    }


def _mount_point(environ: Environ) -> str:
    """The URL path AtomMQ answers under. Usually SCRIPT_NAME; but when an .htaccess rewrite
    took /atommq/feed=x to /cgi-bin/atommq.cgi/feed=x, Apache keeps the URL the client asked for
    in REDIRECT_URL (REDIRECT_STATUS 200), and links should use that clean prefix. REDIRECT_URL
    is still percent-encoded; PATH_INFO is not."""
    redirected = unquote_to_bytes(str(environ.get("REDIRECT_URL", ""))).decode("latin-1")
    path = environ.get("PATH_INFO", "")
    if redirected and environ.get("REDIRECT_STATUS") == "200" and redirected.endswith(path):
        return redirected[: len(redirected) - len(path)].rstrip("/") if path else redirected
    return str(environ.get("SCRIPT_NAME", ""))


def _allow(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise MethodNotAllowed(method, allowed)


def _matches(environ: Environ, etag: str) -> bool:
    """If-None-Match (RFC 9110 13.1.2), compared weakly."""
    header = environ.get("HTTP_IF_NONE_MATCH", "")
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags
