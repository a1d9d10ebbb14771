"""What a request brings in: its body, the message in that body, its path and its cursor.

HTTP input only: no routing, no responses, no SQL. Bad input raises BadRequest or BodyTooLarge.
"""

import base64
import re
from typing import Any, NamedTuple
from urllib.parse import parse_qs, parse_qsl, quote

from atommq import atom
from atommq.errors import BadRequest, BodyTooLarge, LengthRequired, Unauthorized
from atommq.model import ANY, IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_MAX_LENGTH, NEW, Draft

Environ = dict[str, Any]
_FORM_OR_TEXT = ("", "text/plain", "application/x-www-form-urlencoded")
# Types a client sends an Atom entry with when it says nothing better (curl -d: form-encoded;
# curl --data-binary: octet-stream): a body of one of these that starts with "<" is an entry.
# Any other type is the message's own, whatever its first byte (an SVG, text/html).
_ENTRY_GUESSED = (*_FORM_OR_TEXT, "application/octet-stream")
# Characters that XML 1.0 cannot carry (section 2.2): a message holding one could never be served.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# C0 controls and DEL: never part of a feed name, a message id or a cursor. PostgreSQL cannot
# even compare a string holding NUL, and CR/LF must never reach a header or a log line.
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# Bodies over the limit are still read, up to this much, so that a web server does not cut
# off our 413 because its CGI child stopped reading (Apache mod_cgid then logs "Connection
# reset by peer: ap_content_length_filter" and the client gets a truncated answer).
_DISCARD_AT_MOST = 64 * 1024 * 1024
_CHUNK = 64 * 1024


def parse_message(body: bytes, content_type: str) -> Draft:
    """The message in a POST body. The body is never parsed as a form, whatever its type:
    XML is an Atom entry (an XML media type, or a body starting with `<` of one of the
    _ENTRY_GUESSED types); other text is a plain-text message; any other media type is stored
    with that type (a text/* one as text, others Base64-encoded as RFC 4287 4.1.3.3 requires),
    whatever its first byte."""
    if not body:
        raise BadRequest("the body is empty; send an Atom <entry> or a plain-text message")
    media = content_type.split(";", 1)[0].strip().lower()
    # A UTF-8 byte order mark, then white space: stripping any of the BOM's bytes would also
    # take the start of characters such as U+FEFB (EF BB BB) off a plain-text message.
    start = body.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    if atom.is_xml_media_type(media) or (media in _ENTRY_GUESSED and start.startswith(b"<")):
        return atom.parse_entry(body)
    if media in _FORM_OR_TEXT:
        return Draft("", "", text_body(body), "")
    if not atom.is_media_type(media):
        raise BadRequest(f"Content-Type {content_type!r} is not a media type such as text/plain")
    if media.startswith("text/"):
        return Draft("", "", text_body(body), media)
    return Draft("", "", base64.b64encode(body).decode("ascii"), media)


def text_body(body: bytes) -> str:
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
    """The whole request body, at most `limit` bytes. Without CONTENT_LENGTH, a body is read to
    the end of input only where the gateway says that the input ends there (wsgi.input_terminated:
    CGI and FastCGI, where a web server passes on a chunked upload so); elsewhere there is no body
    (PEP 3333), as a keep-alive connection never reaches its end of input."""
    stream = environ["wsgi.input"]
    length_text = environ.get("CONTENT_LENGTH", "").strip()
    if length_text:
        if not length_text.isascii() or not length_text.isdigit():
            raise BadRequest(f"Content-Length {length_text[:40]!r} is not a number of bytes")
        length = int(length_text)
        if length > limit:
            _read(stream, min(length, _DISCARD_AT_MOST))
            raise BodyTooLarge(f"the body is {length} bytes; the limit is {limit} bytes")
        body = _read(stream, length)
        if len(body) < length:
            # The client stopped sending (or the connection broke) mid-body: what arrived is
            # part of a message, never to be stored as if it were the whole.
            raise BadRequest(
                f"the body ended after {len(body)} of the {length} bytes of its Content-Length; send it again"
            )
        return body
    if method not in ("POST", "PUT", "PATCH"):
        return b""
    if not environ.get("wsgi.input_terminated"):
        if environ.get("HTTP_TRANSFER_ENCODING"):
            raise LengthRequired("this server cannot read a chunked body; send a Content-Length")
        return b""
    body = _read(stream, limit + 1)
    if len(body) > limit:
        _read(stream, _DISCARD_AT_MOST)
        raise BodyTooLarge(f"the body is over the limit of {limit} bytes")
    return body


def _read(stream: Any, size: int) -> bytes:
    parts: list[bytes] = []
    while size > 0:
        try:
            chunk = stream.read(min(size, _CHUNK))
        except (EOFError, OSError):
            # The web server dropped the connection mid-body (flup raises EOFError): the client
            # is gone, and this part of a message must not be taken for a whole one.
            got = sum(len(part) for part in parts)
            raise BadRequest(f"the connection broke after {got} bytes of the body; send it again") from None
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def path_info(environ: Environ) -> str:
    try:
        path = str(environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8"))
    except UnicodeError:
        raise BadRequest("the URL path is not valid UTF-8 after percent-decoding") from None
    bad = _CONTROL.search(path)
    if bad:
        raise BadRequest(f"the URL path contains the control character U+{ord(bad.group()):04X}")
    return path


class Start(NamedTuple):
    """Where a feed page starts, from its query string."""

    cursor: str | None  # the message id of start_after or start_at; None: from the first
    inclusive: bool  # start_at: the page starts with the cursor's message
    last: int | None  # last=N: the feed's newest N messages
    asked: str  # the query as asked, normalised, for the page's self link
    wait: float  # the seconds ?wait= asks to wait for a message (0: none)


def cursor(query: str, max_wait: int = 0) -> Start:
    """Where the page starts: after (start_after=ID) or at (start_at=ID) a message, or at the
    feed's newest N (last=N); the query as asked, normalised (e.g. "start_after=ID&format=json",
    in the order given), for the page's self link: a feed's rel="self" is the URL it was fetched
    from (RFC 4287 4.2.7.2); and the seconds ?wait= asks to wait for a message (at most
    `max_wait`)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=20)
    except (UnicodeError, ValueError):
        raise BadRequest("the query string is not valid; use ?start_after=ID or ?start_at=ID") from None
    params: dict[str, list[str]] = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    unknown = sorted(set(params) - {"start_after", "start_at", "last", "format", "wait"})
    if unknown:
        raise BadRequest(
            f"unknown parameter {unknown[0]!r}; use start_after=ID, start_at=ID, last=N, format=json or wait=SECONDS"
        )
    if "format" in params:
        _format(params)
    wait = _wait(params["wait"], max_wait) if "wait" in params else 0.0
    cursors = [(key, value) for key, value in pairs if key in ("start_after", "start_at", "last")]
    if len(cursors) > 1:
        raise BadRequest("give one of start_after=ID, start_at=ID or last=N, once")
    asked = "&".join(f"{key}={quote(value, safe=':')}" for key, value in pairs)
    if not cursors:
        return Start(None, False, None, asked, wait)
    ((key, value),) = cursors
    if key == "last":
        if not (value.isascii() and value.isdigit() and 0 < int(value[:9])):
            raise BadRequest("last must be a whole number of messages, 1 or more, e.g. last=10")
        return Start(None, False, int(value[:9]), asked, wait)
    if _CONTROL.search(value):
        raise BadRequest(f"{key} holds a control character; a message id never does")
    # An empty cursor (or the original's "0") means "from the first message".
    if value in ("", "0"):
        return Start(None, False, None, asked, wait)
    return Start(value, key == "start_at", None, asked, wait)


def _wait(values: list[str], max_wait: int) -> float:
    if len(values) != 1 or not values[0].isascii() or not values[0].isdigit():
        raise BadRequest("wait must be given once, as a whole number of seconds, e.g. wait=20")
    return float(min(int(values[0][:6]), max_wait))


def prefer_wait(environ: Environ, max_wait: int) -> float | None:
    """The seconds a Prefer: wait=N header asks to wait (RFC 7240 4.3), at most `max_wait`;
    None when it asks nothing. A preference the server cannot read is ignored (RFC 7240 2)."""
    header = environ.get("HTTP_PREFER", "")
    for preference in header.split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        value = value.strip().strip('"')
        if name.strip().lower() == "wait" and value.isascii() and value.isdigit():
            return float(min(int(value[:6]), max_wait))
    return None


# The JSON media types AtomMQ answers with (jsonfeed.py), the one it prefers first.
JSON_TYPES = ("application/feed+json", "application/json")
_ATOM_TYPES = ("application/atom+xml", "application/atomsvc+xml", "application/xml", "text/xml")


# ?format= values: the representations of a feed, a message or the list of feeds; and of a
# message alone, its markup for the sandboxed frame (rendered) and its bytes (raw).
FORMATS = ("json", "atom", "html")
ENTRY_FORMATS = (*FORMATS, "rendered", "raw")


def _format(params: dict[str, list[str]]) -> str:
    values = params.get("format", [])
    if len(values) != 1 or values[0] not in ENTRY_FORMATS:
        raise BadRequest("format must be given once, as format=json, format=atom or format=html")
    return values[0]


def format_asked(environ: Environ) -> str | None:
    """The query's ?format= value (one of ENTRY_FORMATS), or None."""
    query = environ.get("QUERY_STRING", "")
    if "format=" not in query:
        return None
    try:
        params = parse_qs(query, keep_blank_values=True, errors="strict", max_num_fields=20)
    except (UnicodeError, ValueError):
        raise BadRequest("the query string is not valid; use ?format=json") from None
    return _format(params) if "format" in params else None


def wants_html(environ: Environ) -> bool:
    """Is this a person's browser, to be answered a page? ?format=html; else Accept ranks
    text/html above every Atom and JSON type (Chromium: text/html, then application/xml;q=0.9
    and */*;q=0.8); curl's */* and feed readers' Atom types are not."""
    asked = format_asked(environ)
    if asked is not None:
        return asked == "html"
    accept = environ.get("HTTP_ACCEPT", "")
    if "text/html" not in accept:
        return False
    ranges = _accept(accept)
    others = max(_quality(ranges, media) for media in (*JSON_TYPES, *_ATOM_TYPES))
    return _quality(ranges, "text/html") > others


def representation(environ: Environ) -> tuple[str | None, str]:
    """The JSON media type to answer with (None: Atom), and the query's format parameter as
    asked ("format=json", "format=atom" or ""), which links to more of the same carry on.
    ?format= decides; else the Accept header (RFC 9110 12.5.1): JSON when one of JSON_TYPES has
    a higher quality than Atom's types (a tie, */* included, is Atom's, as it was before JSON)."""
    asked = format_asked(environ)
    if asked in ("json", "atom"):
        return (JSON_TYPES[0] if asked == "json" else None), f"format={asked}"
    accept = environ.get("HTTP_ACCEPT", "")
    if "json" not in accept:
        return None, ""
    ranges = _accept(accept)
    best = max(JSON_TYPES, key=lambda media: _quality(ranges, media))
    if _quality(ranges, best) <= max(_quality(ranges, media) for media in _ATOM_TYPES):
        return None, ""
    return best, ""


def _accept(header: str) -> list[tuple[str, float]]:
    """An Accept header's media ranges and their q values; a malformed q counts as 0."""
    ranges = []
    for part in header.split(","):
        media, *parameters = [piece.strip() for piece in part.split(";")]
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality))
    return ranges


def _quality(ranges: list[tuple[str, float]], media: str) -> float:
    """The q of the most specific range that matches `media` (0: none does)."""
    kind = media.split("/", 1)[0]
    for pattern in (media, f"{kind}/*", "*/*"):
        found = [quality for candidate, quality in ranges if candidate == pattern]
        if found:
            return max(found)
    return 0.0


def idempotency_key(environ: Environ) -> str | None:
    """The publisher's Idempotency-Key header: a retry with the same key, in the same feed,
    gets the message its first attempt stored instead of storing it again."""
    key = environ.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not IDEMPOTENCY_KEY.match(key):
        raise BadRequest(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable ASCII characters without spaces"
        )
    return str(key)


def precondition(environ: Environ) -> str | None:
    """A PUT's condition: None (none: it moves the consumer wherever it is), NEW, ANY, or the
    uuid that the consumer must be at (If-Match: "UUID", the ETag its GET or PUT gave)."""
    match, none_match = (
        environ.get("HTTP_IF_MATCH", "").strip(),
        environ.get("HTTP_IF_NONE_MATCH", "").strip(),
    )
    if match and none_match:
        raise BadRequest("send If-Match or If-None-Match, not both")
    if none_match:
        if none_match != "*":
            raise BadRequest("If-None-Match on a PUT must be *: make the consumer only if it is new")
        return NEW
    if not match:
        return None
    if match == "*":
        return ANY
    tag = re.fullmatch(r'"([0-9A-Fa-f-]{36})"', match)
    if tag is None:
        raise BadRequest('If-Match must be one ETag this consumer gave, "UUID" (or *)')
    return tag.group(1).lower()


def cross_site(environ: Environ, public_host: str = "") -> str | None:
    """Why a request that changes something (POST, PUT, DELETE) looks sent by a page of another
    site, through a browser that may hold a login for this one (cross-site request forgery);
    None when it does not. Browsers say where a request comes from, and a page cannot change
    it: Sec-Fetch-Site (all current browsers), else Origin (sent with every cross-origin POST).
    Programs such as curl send neither, and hold no login but the one they are given.
    `public_host`: base_url's host, where a proxy changes the Host header."""
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None:
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site is {site}"
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return None
    host = environ.get("HTTP_HOST", "")
    if origin == "null" or origin.partition("://")[2] not in (host, public_host or host):
        return f"Origin {origin!r} is not this server's ({host!r})"
    return None


def form_fields(body: bytes) -> dict[str, str]:
    """The fields of an HTML form's POST (application/x-www-form-urlencoded, UTF-8)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=10)
    except (UnicodeError, ValueError):
        raise BadRequest("the form is not valid: send it from the feed's page") from None
    return dict(pairs)


def credentials(environ: Environ) -> tuple[str, str] | None:
    """The user name and password of an HTTP Basic Authorization header (RFC 7617), if any."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError
        name, colon, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise Unauthorized("the Authorization header is not HTTP Basic with a UTF-8 name:password") from None
    if not colon or not name:
        raise Unauthorized("the Authorization header is not HTTP Basic with a UTF-8 name:password")
    return name, password
