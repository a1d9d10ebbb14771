"""The browser's side of HTTP: the headers that keep AtomMQ's pages safe (Content-Security-
Policy), its own style sheet and script, the publish form as a message, and a message's bytes
(raw) and markup (rendered) as answers that a browser never runs. app.py routes to these;
the pages themselves are html.py's.
"""

import base64
import binascii
import dataclasses
import functools
import hashlib
from pathlib import Path

from atommq import html, inbound
from atommq.errors import BadRequest, NotFound
from atommq.model import IDEMPOTENCY_KEY, Draft, Message, message_uuid

Response = tuple[str, list[tuple[str, str]], bytes]

# Every page: scripts, styles and images only from AtomMQ itself (its two files: no inline
# script, so none that a message smuggles in runs); no plugins; frames only of AtomMQ's own
# (a message's rendering, itself sandboxed); forms post only here; no page frames AtomMQ's.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; base-uri 'self'; frame-ancestors 'none'"
)
# A message's markup, rendered: a sandbox (no scripts, no forms, no popups, an origin of its
# own even when opened directly), and nothing loaded from anywhere; its inline styles only.
RENDERED_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)
# A message's bytes: a download, never shown in the page's origin.
RAW_POLICY = "sandbox; default-src 'none'"
_SAFE = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin")]

_STATIC_FOLDER = Path(__file__).resolve().parent / "static"
_STATIC_TYPES = {
    "atommq.css": "text/css; charset=utf-8",
    "atommq.js": "text/javascript; charset=utf-8",
    "atommq.svg": "image/svg+xml",  # the pages' icon
}


@functools.cache
def _static() -> dict[str, bytes]:
    """The three small files, read once, when a page or a file is first asked for (a CGI
    process that publishes reads none)."""
    return {name: (_STATIC_FOLDER / name).read_bytes() for name in _STATIC_TYPES}


@functools.cache
def static_version() -> str:
    """A hash of the files, in their URL: a page always gets the files it was made with, and
    they are cached for a year."""
    return hashlib.blake2b(b"".join(_static().values()), digest_size=6).hexdigest()


def page(document: bytes, etag: str | None = None, status: str = "200 OK") -> Response:
    """An HTML page with its headers: not stored by shared caches (it may hold a form that only
    this user gets)."""
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", PAGE_POLICY),
        *_SAFE,
        ("Cache-Control", "private, no-cache"),
        ("Vary", "Accept"),
    ]
    if etag is not None:
        headers.append(("ETag", etag))
    return status, headers, document


def static_file(name: str, version: str) -> Response:
    """AtomMQ's style sheet or script; for ever cacheable at its current version's URL."""
    if name not in _STATIC_TYPES:
        raise NotFound(f"no file {name!r}")
    cache = "public, max-age=31536000, immutable" if version == static_version() else "no-cache"
    headers = [("Content-Type", _STATIC_TYPES[name]), ("Cache-Control", cache), *_SAFE]
    return "200 OK", headers, _static()[name]


def form_draft(body: bytes) -> tuple[Draft, str]:
    """The message that the publish form (html.publish_form) sent, and its Idempotency-Key."""
    fields = inbound.form_fields(body)
    content = fields.get("content", "").replace("\r\n", "\n")
    if not content.strip():
        raise BadRequest("the message is empty; write something in it")
    if fields.get("kind", "text") == "atom":
        draft = inbound.parse_message(content.encode("utf-8"), "application/atom+xml")
    else:
        draft = inbound.parse_message(content.encode("utf-8"), "text/plain; charset=utf-8")
    title = " ".join(fields.get("title", "").split())
    if title:
        draft = dataclasses.replace(draft, title=title, title_type="")
    form_key = fields.get("key", "")
    if not IDEMPOTENCY_KEY.match(form_key) or len(form_key) > 64:
        raise BadRequest("the form is not valid: send it from the feed's page")
    # The form's key with what it holds: the same message sent twice from one form (a double
    # click, a resent POST) is stored once; another message from that form (after going back
    # to it) is another message.
    sent = "\x00".join((fields.get("kind", ""), title, content)).encode("utf-8")
    return draft, f"form-{form_key}-{hashlib.blake2b(sent, digest_size=12).hexdigest()}"


def rendered(message: Message) -> Response:
    """An html or xhtml message's markup, for its page's sandboxed frame."""
    if html.content_kind(message.draft.content_type) != "markup":
        raise NotFound(f"message {message.id} is not html or xhtml; it has no rendered view")
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Security-Policy", RENDERED_POLICY),
        *_SAFE,
    ]
    return "200 OK", headers, html.rendered(message)


def raw(message: Message) -> Response:
    """The message's content as it was published (Base64 decoded), as a download."""
    draft = message.draft
    kind = draft.content_type
    if html.content_kind(kind) in ("binary", "json"):
        try:
            data = base64.b64decode(draft.content, validate=True)
        except (binascii.Error, ValueError):
            data = draft.content.encode("utf-8")
        media = kind
    else:
        data = draft.content.encode("utf-8")
        named = {
            "": "text/plain",
            "text": "text/plain",
            "html": "text/html",
            "xhtml": "application/xhtml+xml",
        }
        media = named.get(kind, kind.split(";", 1)[0]) + "; charset=utf-8"
    headers = [
        ("Content-Type", media),
        ("Content-Disposition", f'attachment; filename="{message_uuid(message.id)}"'),
        ("Content-Security-Policy", RAW_POLICY),
        *_SAFE,
    ]
    return "200 OK", headers, data
