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
"""

import base64
import binascii
import json
from typing import Any

from atommq.atom import is_xml_media_type
from atommq.model import Feed, Message, Page

FEED_TYPE = "application/feed+json"
VERSION = "https://jsonfeed.org/version/1.1"


def is_json_media_type(media_type: str) -> bool:
    base = media_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def item(message: Message, url: str) -> dict[str, Any]:
    """One message as a JSON Feed item; `url` is its entry's address."""
    draft = message.draft
    kind = draft.content_type
    extension: dict[str, Any] = {"content_type": kind or "text"}
    found: dict[str, Any] = {"id": message.id, "url": url}
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


def render_item(message: Message, url: str) -> bytes:
    return _dump(item(message, url))


def render_feed(page: Page, items: list[dict[str, Any]], self_href: str, next_href: str | None) -> bytes:
    """A page of a feed, oldest message first, with `items` (item() of each message of the page);
    `next_url` when more remain."""
    document: dict[str, Any] = {"version": VERSION, "title": page.feed.name, "feed_url": self_href}
    if next_href is not None:
        document["next_url"] = next_href
    document["items"] = items
    document["_atommq"] = {"id": page.feed.id, "updated": page.feed.updated}
    return _dump(document)


def render_service(feeds: list[tuple[Feed, str]]) -> bytes:
    """The feeds, each with its name, address, id and the time of its newest message."""
    listed = [{"name": f.name, "url": href, "id": f.id, "updated": f.updated} for f, href in feeds]
    return _dump({"feeds": listed})


def _utf8(encoded: str) -> str | None:
    """Base64 content as the text it encodes; None if it is not UTF-8."""
    try:
        return base64.b64decode(encoded, validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _dump(document: Any) -> bytes:
    # Non-ASCII as itself (UTF-8, the only JSON encoding: RFC 8259 8.1); one line for curl | jq.
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
