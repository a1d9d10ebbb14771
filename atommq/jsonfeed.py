"""JSON Feed 1.1 (jsonfeed.org/version/1.1) documents from plain objects: a page of a feed, one
message as an item, the list of feeds. AtomMQ's own fields go in an `_atommq` object, as JSON
Feed allows extensions to (readers ignore them). No HTTP, no SQL.

A message's content comes back as it was published, with no decoding by hand:
- text (Atom's text, and text/* media types) and XML media types: `content_text`, as stored;
- html and xhtml: `content_html`, as stored;
- JSON (application/json, and any type ending in +json): `content_text`, the published bytes as
  text, so that `jq '.items[0].content_text | fromjson'` reaches its fields;
- any other media type: `content_text` is the published bytes in Base64, and
  `_atommq.content_encoding` says "base64".
`_atommq.content_type` is the type the message was published with ("text", "html", "xhtml" or a
media type).

An item is made once, when its message is published (stored_item), and stored without its "url",
which depends on the address it is asked at: a page joins stored items, putting each one's url
in (with_url), as an Atom page joins stored entries.
"""

import base64
import binascii
import json
from typing import Any

from atommq.atom import is_xml_media_type
from atommq.model import Consumer, Feed, Message, Page

FEED_TYPE = "application/feed+json"
VERSION = "https://jsonfeed.org/version/1.1"


def is_json_media_type(media_type: str) -> bool:
    base = media_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def stored_item(message: Message) -> bytes:
    """The message as a JSON Feed item without its "url", as stored: "id" first (with_url and
    item_id rely on it), then the rest; one line, no newline."""
    return _compact(_item(message))


def item_id(stored: bytes | Message) -> str:
    """The id of a message, from its stored_item or itself."""
    if isinstance(stored, Message):
        return stored.id
    if not stored.startswith(_ITEM_OPEN) or stored[_ID_END : _ID_END + 2] != b'",':  # cannot happen
        raise AssertionError(f"a stored item begins {stored[:100]!r}")
    return stored[len(_ITEM_OPEN) - len(b"urn:uuid:") : _ID_END].decode("ascii")


def with_url(stored: bytes | Message, entries_href: str) -> bytes:
    """A stored item (or a message stored before items were, made now) with its entry's
    address put in after its id: `entries_href` followed by the message's uuid. The item a
    reader gets."""
    return _with_urls([stored], entries_href)[0]


def _with_urls(entries: list[bytes | Message], entries_href: str) -> list[bytes]:
    # The address as a JSON string without its closing quote, made once for the page (a uuid
    # needs no escaping); then each item is slices joined.
    opening = b',"url":' + _compact(entries_href)[:-1]
    items = []
    for stored in entries:
        if isinstance(stored, Message):
            stored = stored_item(stored)
        item_id(stored)  # checks its shape
        head, uuid, rest = stored[:_ID_END], stored[_ID_END - 36 : _ID_END], stored[_ID_END:]
        items.append(b"".join((head, b'"', opening, uuid, rest)))
    return items


def _item(message: Message) -> dict[str, Any]:
    draft = message.draft
    kind = draft.content_type
    extension: dict[str, Any] = {"content_type": kind or "text"}
    found: dict[str, Any] = {"id": message.id}
    if draft.title:
        found["title"] = draft.title
        if draft.title_type not in ("", "text"):
            extension["title_type"] = draft.title_type
    if kind in ("html", "xhtml"):
        found["content_html"] = draft.content
    elif kind in ("", "text") or kind.lower().startswith("text/") or is_xml_media_type(kind):
        found["content_text"] = draft.content
    elif is_json_media_type(kind) and (text := _utf8(draft.content)) is not None:
        found["content_text"] = text
    else:
        found["content_text"] = draft.content
        extension["content_encoding"] = "base64"
    if draft.summary is not None:
        found["summary"] = draft.summary
        if draft.summary_type not in ("", "text"):
            extension["summary_type"] = draft.summary_type
    found["date_published"] = message.published
    found["date_modified"] = message.updated
    if draft.author is not None:
        found["authors"] = [{"name": draft.author}]
    found["_atommq"] = extension
    return found


def render_item(stored: bytes | Message, entries_href: str) -> bytes:
    """One message's document: its item (with_url's), as a line."""
    return with_url(stored, entries_href) + b"\n"


def render_feed(page: Page, entries_href: str, self_href: str, next_href: str | None) -> bytes:
    """A page of a feed, oldest message first: its stored items (or messages), each with its
    address (with_url); `next_url` when more remain."""
    document: dict[str, Any] = {"version": VERSION, "title": page.feed.name, "feed_url": self_href}
    if next_href is not None:
        document["next_url"] = next_href
    extension = {"id": page.feed.id, "updated": page.feed.updated}
    head = _compact(document)[:-1]  # without its closing brace
    items = b",".join(_with_urls(page.entries, entries_href))
    return b'%s,"items":[%s],"_atommq":%s}\n' % (head, items, _compact(extension))


def render_service(feeds: list[tuple[Feed, str]], consumers: dict[str, list[Consumer]]) -> bytes:
    """The feeds, each with its name, address, id, the time of its newest message, and its
    named consumers with their lag."""
    listed = [
        {
            "name": f.name,
            "url": href,
            "id": f.id,
            "updated": f.updated,
            "consumers": [consumer_object(c) for c in consumers.get(f.name, ())],
        }
        for f, href in feeds
    ]
    return _dump({"feeds": listed})


def render_consumer(consumer: Consumer) -> bytes:
    """GET /feed=NAME/consumer=CNAME as JSON: where it is, and how far behind."""
    return _dump({"feed": consumer.feed, **consumer_object(consumer)})


def consumer_object(consumer: Consumer) -> dict[str, Any]:
    """A named consumer: `last` the id of the last message it processed; `behind` how many came
    after it, `behind_seconds` the age of the oldest of those still held, and `missed` how many
    of them retention removed unread."""
    return {
        "name": consumer.name,
        "last": consumer.last,
        "updated": consumer.updated,
        "behind": consumer.behind,
        "behind_seconds": round(consumer.behind_seconds, 3),
        "missed": consumer.missed,
    }


def _utf8(encoded: str) -> str | None:
    """Base64 content as the text it encodes; None if it is not UTF-8."""
    try:
        return base64.b64decode(encoded, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _dump(document: Any) -> bytes:
    """A document as a line, for curl | jq."""
    return _compact(document) + b"\n"


def _compact(value: Any) -> bytes:
    # Non-ASCII as itself (UTF-8, the only JSON encoding: RFC 8259 8.1).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# A stored item begins {"id":"urn:uuid:<36 characters>", (stored_item, model.atom_id).
_ITEM_OPEN = b'{"id":"urn:uuid:'
_ID_END = len(_ITEM_OPEN) + 36
