"""The shared vocabulary of the seams between `app`, `inbound`, `atom` and `store`: the plain
objects that cross them, the limits that input is checked against and the schema is sized by,
and the form of a message id. Imports nothing of AtomMQ's; no I/O."""

import dataclasses
import hashlib
import os
import re

# A feed name: letters or digits (any script), '_', '-' or '.', not starting with '.' or '-'.
# Nothing that needs escaping in a path, a header or a file name.
FEED_NAME_MAX_LENGTH = 100
FEED_NAME = re.compile(rf"\A\w[\w.-]{{0,{FEED_NAME_MAX_LENGTH - 1}}}\Z")
FEED_NAME_RULE = (
    f"1-{FEED_NAME_MAX_LENGTH} letters, digits, '_', '-' or '.', starting with a letter, digit or '_'"
)
# An Idempotency-Key: printable ASCII without spaces, as in a UUID or a job name and run number.
IDEMPOTENCY_KEY_MAX_LENGTH = 200
IDEMPOTENCY_KEY = re.compile(rf"\A[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX_LENGTH}}}\Z")
# A media type with its parameters (RFC 6838 4.2: type and subtype of up to 127 characters each).
MEDIA_TYPE_MAX_LENGTH = 255
# The type of a title or summary: "", text, html or xhtml (RFC 4287 3.1).
TEXT_TYPE_MAX_LENGTH = 8
UUID_LENGTH = 36  # 8-4-4-4-12 hex digits
# What a PUT of a named consumer expects to find, besides the uuid it must be at (If-Match).
NEW = "new"  # If-None-Match: *   no consumer of that name yet
ANY = "any"  # If-Match: *        one, wherever it is
_URN = "urn:uuid:"


def new_message_uuid(feed_uuid: str, seq: int) -> str:
    """A new message's uuid (RFC 9562 version 8) that says where it stood in its feed: its seq
    in the first 48 bits, 44 random bits, and 30 bits of a hash of the feed's uuid and the rest
    (a check that it is this feed's). So that once the message is removed (retention), a cursor
    naming it is still known for one of the feed's, and how far behind it is (seq_in); one
    the feed never had is told apart. A message uuid carries the number of messages before it."""
    random = int.from_bytes(os.urandom(6), "big") & (2**44 - 1)
    check = _check(feed_uuid, seq, random)
    value = (seq & (2**48 - 1)) << 80 | 0x8 << 76 | (random >> 32) << 64 | 0b10 << 62
    value |= check << 32 | (random & (2**32 - 1))
    hexed = f"{value:032x}"
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def seq_in(uuid: str, feed_uuid: str) -> int | None:
    """The seq that a message uuid made by new_message_uuid for this feed carries; None for any
    other uuid (another feed's, a version 4 one from before AtomMQ 0.9, one made up)."""
    try:
        value = int(uuid.replace("-", ""), 16)
    except ValueError:
        return None
    if len(uuid) != UUID_LENGTH or value >> 76 & 0xF != 0x8 or value >> 62 & 0b11 != 0b10:
        return None
    seq, random = value >> 80, (value >> 64 & 0xFFF) << 32 | value & (2**32 - 1)
    return seq if value >> 32 & (2**30 - 1) == _check(feed_uuid, seq, random) else None


def _check(feed_uuid: str, seq: int, random: int) -> int:
    """30 bits that tie a uuid's seq and random bits to its feed: an altered or made-up uuid
    passes for one of the feed's once in a billion."""
    text = f"{feed_uuid.lower()}/{seq}/{random}".encode("ascii", "replace")
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "big") >> 2


def atom_id(uuid: str) -> str:
    """The Atom <id> of a message or a feed stored under `uuid`: a urn:uuid: (RFC 4122 3)."""
    return _URN + uuid


def message_uuid(message_id: str) -> str:
    """The uuid in a message id; clients may give the urn:uuid: form or the bare uuid."""
    return message_id[len(_URN) :] if message_id.lower().startswith(_URN) else message_id


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
    # Oldest first: each message's stored <entry> (atom.entry_xml), or the Message itself where
    # it was stored without one (before AtomMQ kept them), to be rendered.
    entries: list[bytes | Message]
    more: bool  # messages remain after the last one on this page
    version: str  # opaque; changes whenever this page's document would change


@dataclasses.dataclass(frozen=True, slots=True)
class Consumer:
    """A named consumer of a feed (PUT /feed=NAME/consumer=CNAME) and how far behind it is."""

    feed: str
    name: str
    last: str  # urn:uuid:..., the last message it processed (which may be gone since)
    updated: str  # RFC 3339, UTC: when it said so
    behind: int  # messages published after `last`
    behind_seconds: float  # age of the oldest message it has not processed (0: none)
    missed: int  # of those, how many retention removed before it read them


@dataclasses.dataclass(frozen=True, slots=True)
class FeedStats:
    """What `atommq feeds` shows of a feed."""

    name: str
    messages: int  # held now
    oldest: str | None  # when the oldest held was published (None: holds none)
    newest: str  # when the newest was published
    size: int  # bytes its messages take: content and stored renderings (indexes not counted)
