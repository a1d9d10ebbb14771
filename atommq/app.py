"""make_app(config) -> a WSGI callable: routing, bodies, status codes, links, conditional GET.

HTTP lives here and only here; XML is `atom`'s business and SQL `store`'s. Mounted under a
prefix (SCRIPT_NAME, usually /atommq), it serves:

    GET|HEAD  /                      AtomPub service document, one collection per feed
    GET|HEAD  /feed=NAME             a page of the feed, oldest first (?start_after=ID, ?start_at=ID)
    POST      /feed=NAME             publish one message (the feed is created by its first)
    GET|HEAD  /feed=NAME/entry=ID    one message
"""

import base64
import datetime
import hashlib
import logging
import re
import traceback
import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote, unquote_to_bytes

from atommq import atom
from atommq.config import Config, configure_logging, default_database_url
from atommq.errors import AtomMQError, BadRequest, BodyTooLarge, MethodNotAllowed, NotFound
from atommq.model import Draft, Message
from atommq.store import Store

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
Response = tuple[str, list[tuple[str, str]], bytes]

# A feed name: 1 to 100 letters or digits (any script), '_', '-' or '.', not starting with '.'
# or '-'. Nothing that needs escaping in a path, a header or a file name.
FEED_NAME = re.compile(r"\A\w[\w.-]{0,99}\Z")
FEED_NAME_RULE = "1-100 letters, digits, '_', '-' or '.', starting with a letter, digit or '_'"
FEED_TYPE = "application/atom+xml;type=feed"
SERVICE_TYPE = "application/atomsvc+xml"
TEXT_TYPE = "text/plain; charset=utf-8"
_FORM_OR_TEXT = ("", "text/plain", "application/x-www-form-urlencoded")
# Characters that XML 1.0 cannot carry (section 2.2): a message holding one could never be served.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_MEDIA_TYPE = re.compile(r"\A[a-z0-9][\w.+-]*/[a-z0-9][\w.+-]*\Z")
_HOST = re.compile(r"\A[A-Za-z0-9.\-]+(:[0-9]+)?\Z|\A\[[0-9A-Fa-f:.]+\](:[0-9]+)?\Z")
# Bodies over the limit are still read, up to this much, so that a web server does not cut
# off our 413 because its CGI child stopped reading (FIELD-NOTES 3, mod_cgid).
_DISCARD_AT_MOST = 64 * 1024 * 1024
_CHUNK = 64 * 1024

log = logging.getLogger("atommq")


def now_utc() -> str:
    """RFC 3339 date-time in UTC with microseconds, as Atom's <updated> wants (RFC 4287 3.3)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def make_app(
    config: Config,
    clock: Callable[[], str] = now_utc,
    make_uuid: Callable[[], str] = new_uuid,
    store: Store | None = None,
) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """Build the WSGI application. The clock and the uuid generator are injectable for tests."""
    configure_logging(config)
    return _App(config, store or open_store(config), clock, make_uuid)


def open_store(config: Config, pool_size: int = 10) -> Store:
    """The configured store; the default SQLite folder is created on first use."""
    is_default = config.database_url == default_database_url()
    return Store(config.database_url, pool_size, create_folder=is_default)


class _App:
    def __init__(
        self, config: Config, store: Store, clock: Callable[[], str], make_uuid: Callable[[], str]
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.make_uuid = make_uuid

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            status, headers, body = self.handle(environ, method)
        except AtomMQError as error:
            status, body = error.status, (error.message + "\n").encode("utf-8")
            headers = [("Content-Type", TEXT_TYPE), *error.headers]
            path = environ.get("PATH_INFO", "")
            if error.__cause__ is not None:  # a database failure: the log needs its reason
                _log_error(environ, f"{method} {path!r}: {status}: {error.__cause__}\n")
            else:
                log.info("%s %r: %s %s", method, path, status, error.message)
        except Exception:
            path = environ.get("PATH_INFO", "")
            _log_error(environ, f"{method} {path!r} failed:\n{traceback.format_exc()}")
            status = "500 Internal Server Error"
            body = b"AtomMQ had an internal error; the server's error log has the details\n"
            headers = [("Content-Type", TEXT_TYPE)]
        if not status.startswith("304"):
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [b""] if method == "HEAD" else [body]

    def handle(self, environ: Environ, method: str) -> Response:
        body = read_body(environ, method, self.config.max_body_bytes)
        path = _path(environ)
        if path in ("", "/"):
            _allow(method, ("GET", "HEAD"))
            return self.service(environ)
        match = re.fullmatch(r"/feed=([^/]*)(?:/entry=([^/]+))?/?", path)
        if match is None:
            raise NotFound(f"no resource at {path!r}; feeds are at /feed=NAME")
        name = match.group(1)
        if not FEED_NAME.match(name):
            raise BadRequest(f"feed name {name!r} is not allowed; use {FEED_NAME_RULE}")
        if match.group(2) is not None:
            _allow(method, ("GET", "HEAD"))
            return self.entry(environ, name, match.group(2))
        _allow(method, ("GET", "HEAD", "POST"))
        if method == "POST":
            return self.publish(environ, name, body)
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

    def entry_href(self, environ: Environ, message: Message) -> str:
        uuid = message.id.removeprefix("urn:uuid:")
        return f"{self.feed_href(environ, message.feed)}/entry={uuid}"

    def service(self, environ: Environ) -> Response:
        with self.store.transaction() as session:
            feeds = session.feeds()
        document = atom.render_service([(f, self.feed_href(environ, f.name)) for f in feeds])
        return "200 OK", [("Content-Type", SERVICE_TYPE)], document

    def feed(self, environ: Environ, name: str) -> Response:
        cursor, inclusive = _cursor(environ.get("QUERY_STRING", ""))
        href = self.feed_href(environ, name)
        self_href = href
        if cursor is not None:
            self_href += f"?{'start_at' if inclusive else 'start_after'}={quote(cursor, safe=':')}"
        with self.store.transaction() as session:
            position = session.locate(name, cursor, inclusive)
            tag = f"{position.version}|{self.config.page_size}|{self_href}"
            etag = '"' + hashlib.blake2b(tag.encode("utf-8"), digest_size=12).hexdigest() + '"'
            headers = [("ETag", etag), ("Cache-Control", "no-cache")]
            if _matches(environ, etag):
                return "304 Not Modified", headers, b""
            page = session.read(position, self.config.page_size)
        next_href = None
        if page.more:
            next_href = f"{href}?start_after={quote(page.messages[-1].id, safe=':')}"
        document = atom.render_feed(page, self_href, next_href)
        return "200 OK", [("Content-Type", FEED_TYPE), *headers], document

    def entry(self, environ: Environ, name: str, message_id: str) -> Response:
        with self.store.transaction() as session:
            message = session.message(name, message_id)
        etag = f'"{message.id.removeprefix("urn:uuid:")}"'
        headers = [("ETag", etag)]
        if _matches(environ, etag):
            return "304 Not Modified", headers, b""
        return "200 OK", [("Content-Type", atom.ENTRY_TYPE), *headers], atom.render_entry(message)

    def publish(self, environ: Environ, name: str, body: bytes) -> Response:
        draft = parse_message(body, environ.get("CONTENT_TYPE", ""))
        with self.store.transaction() as session:
            message = session.append(name, draft, self.make_uuid(), self.make_uuid(), self.clock())
            # Rendered before the commit: should it fail, the message is not stored either.
            document = atom.render_entry(message)
        location = self.entry_href(environ, message)
        headers = [
            ("Content-Type", atom.ENTRY_TYPE),
            ("Location", location),
            ("Content-Location", location),
            ("ETag", f'"{message.id.removeprefix("urn:uuid:")}"'),
        ]
        log.info("published %s to feed %r", message.id, name)
        return "201 Created", headers, document


def parse_message(body: bytes, content_type: str) -> Draft:
    """The message in a POST body. The body is never parsed as a form, whatever its type:
    XML is an Atom entry; other text is a plain-text message; any other media type is stored
    with that type, Base64-encoded as RFC 4287 4.1.3.3 requires."""
    if not body:
        raise BadRequest("the body is empty; send an Atom <entry> or a plain-text message")
    media = content_type.split(";", 1)[0].strip().lower()
    if atom.is_xml_media_type(media) or body.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"<"):
        return atom.parse_entry(body)
    if media in _FORM_OR_TEXT:
        return Draft("", "", _text(body), "")
    if not _MEDIA_TYPE.match(media):
        raise BadRequest(f"Content-Type {content_type!r} is not a media type such as text/plain")
    if media.startswith("text/"):
        return Draft("", "", _text(body), media)
    return Draft("", "", base64.b64encode(body).decode("ascii"), media)


def _text(body: bytes) -> str:
    """A plain-text body: UTF-8, and only characters that XML can carry."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not valid UTF-8 (byte {error.start}); send UTF-8 text") from None
    bad = _NOT_XML.search(text)
    if bad:
        raise BadRequest(
            f"the body contains U+{ord(bad.group()):04X}, which XML cannot carry; "
            "send such data as application/octet-stream and it is stored Base64-encoded"
        )
    return text


def read_body(environ: Environ, method: str, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes. Without CONTENT_LENGTH (a chunked upload
    under Apache CGI) a POST body is read to the end of input."""
    stream = environ["wsgi.input"]
    length_text = environ.get("CONTENT_LENGTH", "").strip()
    if length_text:
        try:
            length = int(length_text)
        except ValueError:
            raise BadRequest(f"Content-Length {length_text!r} is not a number") from None
        if length > limit:
            _read(stream, min(length, _DISCARD_AT_MOST))
            raise BodyTooLarge(f"the body is {length} bytes; the limit is {limit} bytes")
        return _read(stream, length)
    if method not in ("POST", "PUT", "PATCH"):
        return b""
    body = _read(stream, limit + 1)
    if len(body) > limit:
        _read(stream, _DISCARD_AT_MOST)
        raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
    return body


def _read(stream: Any, size: int) -> bytes:
    parts = []
    while size > 0:
        chunk = stream.read(min(size, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _path(environ: Environ) -> str:
    try:
        return str(environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8"))
    except UnicodeError:
        raise BadRequest("the URL path is not valid UTF-8 after percent-decoding") from None


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


def _cursor(query: str) -> tuple[str | None, bool]:
    """The start_after or start_at id from the query string, and whether it is inclusive."""
    try:
        params = parse_qs(query, keep_blank_values=True, errors="strict", max_num_fields=20)
    except (UnicodeError, ValueError):
        raise BadRequest("the query string is not valid; use ?start_after=ID or ?start_at=ID") from None
    unknown = sorted(set(params) - {"start_after", "start_at"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; use start_after=ID or start_at=ID")
    if len(params) > 1 or any(len(v) > 1 for v in params.values()):
        raise BadRequest("give one cursor: start_after=ID or start_at=ID, once")
    if not params:
        return None, False
    ((key, (value,)),) = params.items()
    # An empty cursor (or the original's "0") means "from the first message".
    if value in ("", "0"):
        return None, False
    return value, key == "start_at"


def _matches(environ: Environ, etag: str) -> bool:
    """If-None-Match (RFC 9110 13.1.2), compared weakly."""
    header = environ.get("HTTP_IF_NONE_MATCH", "")
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def _log_error(environ: Environ, text: str) -> None:
    """Unexpected errors go to the log file when one is set, else to the web server's log."""
    if log.handlers:
        log.error("%s", text)
    else:
        environ["wsgi.errors"].write(text)
        environ["wsgi.errors"].flush()
