"""Atom XML <-> plain objects (RFC 4287, RFC 5023). Pure: bytes in, objects out, and back.

Knows nothing of HTTP or SQL. The parser never loads DTDs, entities or anything from the network.
"""

import re
import uuid as uuidlib

from lxml import etree

from atommq.errors import BadRequest
from atommq.model import MEDIA_TYPE_MAX_LENGTH, Consumer, Draft, Feed, Message, Page

ATOM = "http://www.w3.org/2005/Atom"
APP = "http://www.w3.org/2007/app"
XHTML = "http://www.w3.org/1999/xhtml"
# AtomMQ's own elements (RFC 5023 6.2 extensions): a collection's named consumers and their lag.
ATOMMQ = "tag:atommq,2026:ns"
ATOM_03 = "http://purl.org/atom/ns#"  # pre-RFC Atom, still the default of Perl's XML::Atom
DEFAULT_AUTHOR = "AtomMQ"
ENTRY_TYPE = "application/atom+xml;type=entry"
TEXT_TYPES = ("", "text", "html")

_A = "{" + ATOM + "}"
_P = "{" + APP + "}"
_XHTML_DIV = "{" + XHTML + "}div"
# A DOCTYPE can only stand in the prolog: after an optional BOM, XML declaration, PIs, comments.
# Possessive (*+): a prolog that is not followed by a DOCTYPE fails at once, instead of being
# re-split in exponentially many ways (40 spaces, or 40 comments, took hours).
_DOCTYPE = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s|<\?.*?\?>|<!--.*?-->)*+<!DOCTYPE", re.S)
_NSMAP = {None: ATOM, "app": APP}


# resolve_entities=False: no entity is ever expanded (no XXE, no billion laughs);
# no_network and load_dtd=False: nothing is fetched; huge_tree=False keeps libxml2's depth and
# size limits (nesting deeper than 256 levels is refused).
def _hardened_parser(**options: str) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
        **options,
    )


_PARSER = _hardened_parser()
# The same for request bodies, which are UTF-8 whatever their XML declaration says: a body that
# declares ISO-8859-1 or UTF-7 would otherwise be decoded into other characters than were sent.
_BODY_PARSER = _hardened_parser(encoding="utf-8")
# A feed holds an entry one level deeper than the entry's own document, and XML parsers refuse
# documents deeper than 256 levels (libxml2 without XML_PARSE_HUGE): a deeper entry would make
# its whole feed unreadable to consumers.
MAX_DEPTH = 255
_TOO_DEEP = etree.XPath("boolean(" + "/".join(["*"] * MAX_DEPTH) + ")")
_TOO_DEEP_MESSAGE = f"the entry nests elements more than {MAX_DEPTH} levels deep; flatten it"
# A media type (RFC 6838 4.2: type and subtype names of at most 127 characters), with parameters.
_MEDIA_TYPE = re.compile(
    r"\A[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}(?:[ \t]*;[\x20-\x7e]*)?\Z", re.ASCII
)


def is_media_type(text: str) -> bool:
    """Whether `text` is a media type such as text/plain or application/vnd.x+xml;v=1."""
    return len(text) <= MEDIA_TYPE_MAX_LENGTH and _MEDIA_TYPE.match(text) is not None


def is_xml_media_type(media_type: str) -> bool:
    """RFC 4287 4.1.3.3 item 4: XML media types are those ending in +xml or /xml."""
    base = media_type.split(";", 1)[0].strip().lower()
    return base.endswith(("+xml", "/xml"))


def needs_summary(content_type: str) -> bool:
    """RFC 4287 4.1.1.1: an entry whose content is Base64 (a media type that is neither XML nor
    text/*) MUST have a summary, as a reader cannot show the content itself. Also where the W3C
    Feed Validator reads the type as written (case and parameters included) and thinks so:
    Application/XML, application/xml; charset=utf-8."""
    if content_type in (*TEXT_TYPES, "xhtml"):
        return False
    base = content_type.split(";", 1)[0].strip().lower()
    as_written = not (content_type.endswith(("+xml", "/xml")) or content_type.startswith("text/"))
    return as_written or not (is_xml_media_type(base) or base.startswith("text/"))


def describe_content(content_type: str, content: str) -> str:
    """A summary for content whose publisher sent none: its media type and size in bytes."""
    base = content_type.split(";", 1)[0].strip().lower()
    if base.startswith("text/") or is_xml_media_type(base):  # held as text, not Base64
        size = len(content.encode("utf-8"))
    else:
        data = "".join(content.split())
        size = len(data) * 3 // 4 - data[-2:].count("=")
    return f"{content_type}, {size} byte{'s' * (size != 1)}"


def parse_entry(body: bytes) -> Draft:
    """An Atom entry document, with or without the Atom namespace, as a Draft."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not valid UTF-8 (byte {error.start}); send UTF-8") from None
    if _DOCTYPE.match(body):
        raise BadRequest("the body has a DOCTYPE; DTDs and entity declarations are not accepted")
    try:
        root = etree.fromstring(body, _BODY_PARSER)
    except etree.XMLSyntaxError as error:
        if "Excessive depth" in error.msg:
            raise BadRequest(_TOO_DEEP_MESSAGE) from None
        reason = " ".join(error.msg.split())  # one line: libxml2 puts newlines in some messages
        raise BadRequest(f"the body is not well-formed XML: {reason}") from None
    if _TOO_DEEP(root):
        raise BadRequest(_TOO_DEEP_MESSAGE)
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise BadRequest("the body has a DOCTYPE; DTDs and entity declarations are not accepted")
    namespace = etree.QName(root).namespace
    if namespace == ATOM_03:
        raise BadRequest(
            f"the entry is Atom 0.3 ({ATOM_03}); send Atom 1.0 "
            "(with Perl's XML::Atom, set $XML::Atom::DefaultVersion = '1.0')"
        )
    if etree.QName(root).localname != "entry" or namespace not in (None, ATOM):
        raise BadRequest(f"the body is a <{etree.QName(root).localname}>, not an Atom <entry>")
    prefix = _A if namespace else ""

    content = _only_child(root, prefix + "content")
    if content is None:
        raise BadRequest("the entry has no <content>; put the message in <content>")
    if content.get("src") is not None:
        raise BadRequest("<content src=...> is not supported; put the message inside <content>")
    content_type = _type(content, "content")
    if content_type not in (*TEXT_TYPES, "xhtml") and not is_media_type(content_type):
        raise BadRequest(
            f"<content type={_shorten(content_type)!r}> is not allowed; use text, html, xhtml "
            "or a media type such as application/json"
        )
    title = _only_child(root, prefix + "title")
    title_text, title_type = ("", "") if title is None else _text_construct(title, "title")
    summary = _only_child(root, prefix + "summary")
    summary_text, summary_type = (None, "") if summary is None else _text_construct(summary, "summary")
    if content_type in TEXT_TYPES or content_type == "xhtml":
        content_text, content_type = _text_construct(content, "content")
    elif is_xml_media_type(content_type):
        content_text = _inner_xml(content)
    else:
        if len(content):
            raise BadRequest(f'<content type="{content_type}"> must hold text, not elements')
        content_text = content.text or ""

    author = None
    author_element = _only_child(root, prefix + "author")
    if author_element is not None:
        name = _only_child(author_element, prefix + "name")
        if name is not None and any(isinstance(child.tag, str) for child in name):
            raise BadRequest("<author><name> must hold text only, not elements")  # RFC 4287 3.2.1
        # Its text, around any comments and processing instructions in it.
        author = None if name is None else (name.text or "") + "".join(c.tail or "" for c in name)
        if author is None or not author.strip():
            raise BadRequest("<author> needs a non-empty <name>")
    return Draft(title_text, title_type, content_text, content_type, author, summary_text, summary_type)


def _shorten(text: str, limit: int = 60) -> str:
    """Enough of a client's value to recognise it in a one-line error message."""
    return text if len(text) <= limit else text[:limit] + "..."


def _type(element: etree._Element, name: str) -> str:
    """The type attribute, "" when there is none. An empty one is refused, as it could not come
    back as sent: it is served as no type at all."""
    kind = element.get("type")
    if kind == "":
        raise BadRequest(f'<{name} type=""> is not allowed; leave type out or use text, html or xhtml')
    return kind or ""


def _only_child(parent: etree._Element, tag: str) -> etree._Element | None:
    found = parent.findall(tag)
    if len(found) > 1:
        raise BadRequest(f"the entry has {len(found)} <{etree.QName(tag).localname}> elements; send one")
    return found[0] if found else None


def _text_construct(element: etree._Element, name: str) -> tuple[str, str]:
    """RFC 4287 3.1: text and html hold text only; xhtml holds exactly one XHTML div."""
    kind = _type(element, name)
    if kind in TEXT_TYPES:
        if len(element):
            raise BadRequest(
                f'<{name}> of type "{kind or "text"}" must not contain elements; '
                'escape the markup or use type="xhtml"'
            )
        return element.text or "", kind
    if kind == "xhtml":
        children = list(element)
        stray = (element.text or "").strip() or any((c.tail or "").strip() for c in children)
        if len(children) != 1 or children[0].tag != _XHTML_DIV or stray:
            raise BadRequest(f'<{name} type="xhtml"> must hold exactly one <div xmlns="{XHTML}">')
        # XHTML only (RFC 4287 3.1.1.3 and its schema): another vocabulary goes in <content> of
        # an XML media type, which holds any.
        for node in children[0].iter():
            if isinstance(node.tag, str) and etree.QName(node).namespace != XHTML:
                raise BadRequest(
                    f'<{name} type="xhtml"> may hold XHTML elements only, not <{etree.QName(node).localname}>; '
                    'send other XML as <content type="application/xhtml+xml">'
                )
        return _inner_xml(element), kind
    raise BadRequest(f"<{name} type={_shorten(kind)!r}> is not allowed; use text, html or xhtml")


def _inner_xml(element: etree._Element) -> str:
    """The element's content (text, children and their tails) as XML text, namespaces included."""
    parts = [_escape(element.text or "")]
    parts.extend(etree.tostring(child, encoding="unicode", with_tail=True) for child in element)
    return "".join(parts)


def _escape(text: str) -> str:
    # A raw CR would be read back as LF (XML 1.0 2.11): it is kept as a character reference.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def xhtml_as_html(text: str) -> str:
    """An xhtml message's markup (the inner XML of its <content>, as stored) as HTML, for a
    browser's HTML parser: elements without their namespaces, and an empty one written
    <b></b>, not <b/> (which an HTML parser reads as an open <b> around all that follows)."""
    wrapper = etree.fromstring(f"<w>{text}</w>", _PARSER)
    for node in wrapper.iter(etree.Element):
        node.tag = etree.QName(node).localname
    etree.cleanup_namespaces(wrapper)
    html = str(etree.tostring(wrapper, method="html", encoding="unicode"))
    return html[len("<w>") : -len("</w>")]


def _add_text(parent: etree._Element, tag: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, tag)
    element.text = text
    return element


def _add_construct(parent: etree._Element, tag: str, text: str, kind: str, splices: dict[str, str]) -> None:
    if kind == "xhtml" or (kind not in TEXT_TYPES and is_xml_media_type(kind)):
        wrapper = etree.fromstring(f"<w>{text}</w>", _PARSER)
        # Elements in no namespace must not fall into the default Atom namespace: their parent
        # then undeclares it (xmlns="") and names itself with a prefix.
        unqualified = any(
            etree.QName(node).namespace is None for node in wrapper.iterdescendants(etree.Element)
        )
        element = etree.SubElement(parent, tag, nsmap={"atom": ATOM, None: ""} if unqualified else None)
        # The XML goes in as it was stored (it declares its own namespaces), in place of a
        # marker, after serialisation: lxml re-maps the namespaces of elements moved into the
        # entry, and dropped <atom:x> inside <order xmlns="urn:w"> to <x>, in urn:w.
        marker = f"[splice {uuidlib.uuid4().hex}]"
        splices[marker] = text
        element.text = marker
    else:
        element = etree.SubElement(parent, tag)
        element.text = text
    if kind:
        element.set("type", kind)


def _entry_element(message: Message, splices: dict[str, str]) -> etree._Element:
    """The message's <entry>; its XML constructs are markers, their XML is in `splices`."""
    entry = etree.Element(_A + "entry", nsmap=_NSMAP)
    draft = message.draft
    _add_text(entry, _A + "id", message.id)  # first: entry_id reads it from a stored entry
    _add_construct(entry, _A + "title", draft.title, draft.title_type, splices)
    _add_text(entry, _A + "updated", message.updated)
    _add_text(entry, _A + "published", message.published)
    # RFC 5023 10.2: when the entry was last edited; a message never is, so when it was stored.
    _add_text(entry, _P + "edited", message.updated)
    if draft.author is not None:
        author = etree.SubElement(entry, _A + "author")
        _add_text(author, _A + "name", draft.author)
    if draft.summary is not None:
        _add_construct(entry, _A + "summary", draft.summary, draft.summary_type, splices)
    elif needs_summary(draft.content_type):
        _add_text(entry, _A + "summary", describe_content(draft.content_type, draft.content))
    _add_construct(entry, _A + "content", draft.content, draft.content_type, splices)
    return entry


def _serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, encoding="utf-8", xml_declaration=True))


_DECLARATION = b"<?xml version='1.0' encoding='utf-8'?>\n"
# An <entry> made on its own declares the namespaces that a feed declares on its root.
_ENTRY_OPEN = f'<entry xmlns="{ATOM}" xmlns:app="{APP}">'.encode()
_PLAIN_OPEN = b"<entry>"
_DEFAULT_AUTHOR = f"<author><name>{DEFAULT_AUTHOR}</name></author>".encode()


def entry_xml(message: Message) -> bytes:
    """The message's <entry> as it stands in a feed, whose root declares the Atom namespace as
    the default and the AtomPub one as app:. Made once, when the message is published, and
    stored (messages never change): a page joins these, and an entry document is one of them
    with its namespaces declared, so a message has the same bytes in a page and on its own."""
    splices: dict[str, str] = {}
    text = bytes(etree.tostring(_entry_element(message, splices), encoding="utf-8"))
    if not text.startswith(_ENTRY_OPEN):  # the nsmap of _entry_element: cannot happen
        raise AssertionError(f"an entry was serialised as {text[:100]!r}")
    for marker, xml in splices.items():
        text = text.replace(marker.encode("ascii"), xml.encode("utf-8"), 1)
    return _PLAIN_OPEN + text[len(_ENTRY_OPEN) :]


def entry_id(entry: bytes | Message) -> str:
    """The id of a message, from its stored entry_xml (which begins with it) or itself."""
    if isinstance(entry, Message):
        return entry.id
    start = len(_PLAIN_OPEN + b"<id>")
    if not entry.startswith(_PLAIN_OPEN + b"<id>"):  # entry_xml's own order: cannot happen
        raise AssertionError(f"a stored entry begins {entry[:100]!r}")
    return entry[start : entry.index(b"</id>", start)].decode("ascii")


def render_entry(message: Message, stored: bytes | None = None) -> bytes:
    """A standalone entry document from the message's `stored` entry_xml (made now if None).
    It names an author, as RFC 4287 4.1.2 requires where no feed gives one: AtomMQ, as the feed
    does, for a message whose publisher named none."""
    xml = entry_xml(message) if stored is None else stored
    author = _DEFAULT_AUTHOR if message.draft.author is None else b""
    return _DECLARATION + _ENTRY_OPEN + author + xml[len(_PLAIN_OPEN) :]


def _add_link(parent: etree._Element, rel: str, href: str, media_type: str = "") -> None:
    link = etree.SubElement(parent, _A + "link", rel=rel, href=href)
    if media_type:
        link.set("type", media_type)


def render_feed(page: Page, self_href: str, next_href: str | None) -> bytes:
    """One page of a feed, oldest message first; rel="next" when more remain (RFC 5005 3).
    The feed's own elements are made here; its entries are the messages' stored entry_xml
    (rendered now for a message stored without one)."""
    feed = etree.Element(_A + "feed", nsmap=_NSMAP)
    _add_text(feed, _A + "id", page.feed.id)
    _add_text(feed, _A + "title", page.feed.name)
    _add_text(feed, _A + "updated", page.feed.updated)
    author = etree.SubElement(feed, _A + "author")
    _add_text(author, _A + "name", DEFAULT_AUTHOR)
    # The bare Atom type: feed validators expect it on rel="self" (RFC 4287 4.2.7.3's example).
    _add_link(feed, "self", self_href, "application/atom+xml")
    if next_href is not None:
        _add_link(feed, "next", next_href, "application/atom+xml;type=feed")
    head = _serialize(feed)
    if not head.endswith(b"</feed>"):  # it has children, so it has an end tag
        raise AssertionError(f"a feed was serialised as {head[-100:]!r}")
    entries = [entry if isinstance(entry, bytes) else entry_xml(entry) for entry in page.entries]
    return b"".join((head[: -len(b"</feed>")], *entries, b"</feed>"))


def render_service(feeds: list[tuple[Feed, str]], consumers: dict[str, list[Consumer]]) -> bytes:
    """An AtomPub service document (RFC 5023 8) with one collection per (feed, href), and in
    each an <amq:consumer> per named consumer of the feed, with its lag."""
    nsmap = {None: APP, "atom": ATOM}
    if consumers:
        nsmap["amq"] = ATOMMQ
    service = etree.Element(_P + "service", nsmap=nsmap)
    workspace = etree.SubElement(service, _P + "workspace")
    _add_text(workspace, _A + "title", "AtomMQ")
    for feed, href in feeds:
        collection = etree.SubElement(workspace, _P + "collection", href=href)
        _add_text(collection, _A + "title", feed.name)
        _add_text(collection, _P + "accept", ENTRY_TYPE)
        for consumer in consumers.get(feed.name, ()):
            etree.SubElement(collection, f"{{{ATOMMQ}}}consumer", _consumer_attributes(consumer))
    return _serialize(service)


def _consumer_attributes(consumer: Consumer) -> dict[str, str]:
    """A named consumer's lag, as the attributes of <amq:consumer> (jsonfeed.consumer_object's
    fields)."""
    return {
        "name": consumer.name,
        "last": consumer.last,
        "updated": consumer.updated,
        "behind": str(consumer.behind),
        "behind_seconds": f"{consumer.behind_seconds:.3f}",
        "missed": str(consumer.missed),
    }
