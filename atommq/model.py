"""The plain objects that cross the seams between `atom`, `store` and `app`. No behaviour."""

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Draft:
    """A message as a publisher sent it, before the server gives it an id and times.

    Text constructs keep their `type` attribute exactly as sent ("" when it was absent). For
    type "xhtml" and XML media types, `content`/`title`/`summary` hold the element's inner XML
    as text; for other non-text media types, the Base64 text that RFC 4287 4.1.3.3 requires.
    `summary` is None when the publisher sent none.
    """

    title: str
    title_type: str
    content: str
    content_type: str
    author: str | None = None
    summary: str | None = None
    summary_type: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    id: str  # urn:uuid:..., the Atom <id>
    feed: str
    draft: Draft
    published: str  # RFC 3339, UTC
    updated: str


@dataclasses.dataclass(frozen=True, slots=True)
class Feed:
    name: str
    id: str  # urn:uuid:..., stable for the life of the feed
    updated: str  # when its newest message was published


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    feed: Feed
    messages: list[Message]
    more: bool  # messages remain after the last one on this page
    version: str  # opaque; changes whenever this page's document would change
