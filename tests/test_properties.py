"""Properties that hold whatever a client sends (hypothesis): in-process on every database, and
those about a header, a path or any request at all through every gateway and web server too:

1. an entry, plain-text or other body that the server accepts (201) comes back exactly as sent,
   at its Location and at the end of the feed it was posted to, and in no other feed;
2. a request that the server refuses (4xx), or that only reads, leaves the store as it was;
3. no request gets a 5xx.

"Exactly" is what test_publish.py means: the same `type` attribute and the same XML content,
wherever its namespaces were declared and whatever prefixes they were given. Each test makes one
client, so one server, and runs all its examples against it: every example posts to a feed of its
own or compares the store before and after itself, so examples never see each other's messages.
"""

import base64
import itertools
import re
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st
from lxml import etree

import webservers
from conftest import ATOM_NS, IN_CI, Client

ATOM = "http://www.w3.org/2005/Atom"
XHTML = "http://www.w3.org/1999/xhtml"
FEED_NAME = re.compile(r"\A\w[\w.-]{0,99}\Z")  # README, "Feed names"
# The test's own reading of what was sent: a parser that loads nothing, and reads UTF-8 whatever
# the XML declaration says, as bodies are UTF-8 (README).
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, encoding="utf-8")
CGI_KINDS = ("cgi", "lighttpd-cgi", "apache-cgi", "apache-htaccess")
_feed_numbers = itertools.count()


def examples(client: Client, many: int) -> int:
    """Examples of one property on this transport. A request costs a millisecond or so in-process
    and through the FastCGI script, a few through a web server, and a third of a second wherever
    CGI starts Python for it (README, Performance)."""
    if client.kind in CGI_KINDS:
        return max(1, many // 50)
    if client.kind in webservers.KINDS:
        return max(5, many // 5)
    return many


def run(client: Client, test: Callable[..., None], many: int) -> None:
    """Run a @given test against `client`. The client is made once per pytest test, outside
    hypothesis: its examples share one server, and each one keeps to a feed of its own or checks
    the store against what it saw before, so sharing it is safe."""
    settings(
        max_examples=examples(client, many),
        deadline=None,  # a CGI request takes a third of a second; speed is the benchmark's business
        derandomize=IN_CI,  # CI draws the same examples on every run, so a failure there repeats
        database=None if IN_CI else settings.default.database,
        print_blob=True,
        # Entries with trees, bodies and headers are big to draw, and meant to be.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)()


def fresh_feed(kind: str) -> str:
    return f"{kind}{next(_feed_numbers)}"


# ---------------------------------------------------------------------------------------------
# Text and markup

# Every character XML 1.0 can carry (section 2.2), C1 controls and line separators included.
XML_CHAR = st.characters(
    codec="utf-8",
    exclude_categories=("Cs", "Cc"),
    exclude_characters="\ufffe\uffff",
    include_characters="\t\n\r\x7f\x85",
)
# Text that looks like markup, entities, form fields or line ends: it must come back as text.
TRICKY = st.sampled_from(
    ["<", ">", "&", "&amp;", "&lt;b&gt;", "<b>bold</b>", "]]>", "<![CDATA[x]]>", "<!-- c -->", "<?pi?>"]
    + ['"', "'", "&#13;", "%41", "a&feed=other&", "\r\n", "\r", " ", "\t", "\u2028", "\ufeff", "𝄞"]
)


def texts(parts: int = 6) -> st.SearchStrategy[str]:
    return st.lists(st.text(XML_CHAR, max_size=12) | TRICKY, max_size=parts).map("".join)


def escape(text: str, style: str) -> str:
    """`text` as XML character data, written in one of the ways publishers write it."""
    if style == "references":
        return "".join(
            c if c.isascii() and c.isalnum() else f"&#x{ord(c):X};" if ord(c) % 2 else f"&#{ord(c)};"
            for c in text
        )
    if style == "cdata" and "\r" not in text:  # a CR in a CDATA section is read as LF (XML 2.11)
        return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("]]>", "]]&gt;").replace("\r", "&#13;")


def attribute(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


STYLES = st.sampled_from(["plain", "references", "cdata"])
SPACE = st.sampled_from(["", "", "\n", "\n  ", "\r\n\t", " "])
PREFIXES = {XHTML: "h", "urn:w": "w", "http://example.org/x": "x", ATOM: "atom"}
XHTML_NAMES = st.sampled_from(["p", "b", "i", "em", "span", "a", "br", "code", "ul", "li", "pre"])
# No "entry" or "feed": inside a namespaced entry they would be atom:entry and atom:feed, which the
# RFC 4287 Schematron rules that conftest.py checks every document against match at any depth
# (content included), wanting an author there.
NAMES = st.sampled_from(["order", "item", "größe", "名前", "a.b-c_d", "content", "div"]) | st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_.-]{0,8}", fullmatch=True
).filter(lambda name: name not in ("entry", "feed"))
ATTRIBUTES = st.sampled_from(["class", "href", "n", "{urn:w}n", "{http://www.w3.org/XML/1998/namespace}lang"])
# Comments and processing instructions, which XML content may hold.
MISC = st.one_of(
    texts(3).map(lambda t: etree.Comment(t.replace("-", "~"))),  # "--" cannot be in a comment
    texts(3).map(lambda t: etree.ProcessingInstruction("pi", t.replace("?>", "? >"))),
)


@st.composite
def element(draw: Any, namespaces: Any, names: Any, depth: int = 2, name: str | None = None) -> Any:
    """An XML element in one of `namespaces` (None: no namespace), with attributes, mixed
    content, comments and processing instructions."""
    namespace = draw(namespaces)
    local = name or draw(names)
    if namespace is None:
        node = etree.Element(local)
    else:
        prefix = draw(st.sampled_from([None, PREFIXES[namespace]]))
        node = etree.Element(f"{{{namespace}}}{local}", nsmap={prefix: namespace})
    for key, value in draw(st.lists(st.tuples(ATTRIBUTES, texts(3)), max_size=2)):
        node.set(key, value)
    node.text = draw(texts(3))
    if depth:
        for child in draw(st.lists(element(namespaces, names, depth - 1) | MISC, max_size=3)):
            child.tail = draw(texts(2))
            node.append(child)
    return node


def serialize(node: Any) -> str:
    return str(etree.tostring(node, encoding="unicode", with_tail=False))


@st.composite
def xhtml_div(draw: Any) -> str:
    """RFC 4287 3.1.1.3: one XHTML div, XHTML elements inside."""
    div = draw(element(st.just(XHTML), XHTML_NAMES, name="div"))
    return draw(SPACE) + serialize(div) + draw(SPACE)


@st.composite
def xml_inner(draw: Any) -> str:
    """The content of an XML media type: text, elements of any namespace or none, and the rest."""
    namespaces = st.sampled_from([None, None, "urn:w", "http://example.org/x", XHTML, ATOM])
    nodes = draw(st.lists(element(namespaces, NAMES) | MISC, max_size=3))
    return escape(draw(texts(3)), draw(STYLES)) + "".join(
        serialize(n) + escape(draw(texts(2)), draw(STYLES)) for n in nodes
    )


# ---------------------------------------------------------------------------------------------
# Media types (RFC 6838 4.2: type and subtype names of up to 127 characters, then parameters)


def media_types(top: Any, subtype: Any) -> Any:
    """Types of up to 255 characters, parameters included: the server keeps no longer ones."""
    parameters = st.lists(st.sampled_from(["; charset=utf-8", ";q=1", '; name="a b"']), max_size=2)
    types = st.builds(lambda t, s, p: f"{t}/{s}{''.join(p)}", top, subtype, parameters)
    return types.filter(lambda t: len(t) <= 255)


NAME_127 = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,126}", fullmatch=True)
XML_MEDIA = st.sampled_from(
    ["application/xml", "text/xml", "application/vnd.widget+xml", "image/svg+xml", "application/atom+xml"]
) | media_types(NAME_127, NAME_127.map(lambda s: s[:123] + "+xml"))
TEXT_MEDIA = st.sampled_from(
    ["text/plain", "text/csv", "text/markdown; charset=UTF-8", "text/html"]
) | media_types(st.just("text"), NAME_127.filter(lambda s: not s.endswith("xml")))
OTHER_MEDIA = st.sampled_from(
    ["application/json", "application/octet-stream", "image/png", "Application/PDF"]
) | (media_types(NAME_127.filter(lambda s: s != "text"), NAME_127.filter(lambda s: not s.endswith("xml"))))


# ---------------------------------------------------------------------------------------------
# Atom entries


@st.composite
def text_construct(draw: Any, tag: str) -> str:
    """RFC 4287 3.1: text, html or xhtml, with or without its type attribute."""
    kind = draw(st.sampled_from([None, "text", "html", "xhtml"]))
    inner = draw(xhtml_div()) if kind == "xhtml" else escape(draw(texts()), draw(STYLES))
    typed = "" if kind is None else f' type="{kind}"'
    return f"<{tag}{typed}>{inner}</{tag}>"


@st.composite
def content(draw: Any, tag: str) -> str:
    """RFC 4287 4.1.3: a text construct, XML, text or any other media type (Base64)."""
    kind = draw(st.sampled_from(["construct", "construct", "xml", "text", "other"]))
    if kind == "construct":
        return draw(text_construct(tag))
    if kind == "xml":
        media, inner = draw(XML_MEDIA), draw(xml_inner())
    elif kind == "text":
        media, inner = draw(TEXT_MEDIA), escape(draw(texts()), draw(STYLES))
    else:
        data = base64.b64encode(draw(st.binary(max_size=120))).decode()
        wrap = draw(st.sampled_from([0, 76]))  # MIME line length, or none
        inner = "\n".join(data[i : i + wrap] for i in range(0, len(data), wrap)) if wrap else data
        media = draw(OTHER_MEDIA)
    return f'<{tag} type="{attribute(media)}">{inner}</{tag}>'


@st.composite
def author(draw: Any, p: str) -> str:
    # The server refuses a name that is empty once str.strip() has taken its white space.
    name = draw(texts().filter(lambda t: t.strip()))
    email = draw(st.sampled_from(["", f"<{p}email>cron@example.org</{p}email>"]))
    return f"<{p}author><{p}name>{escape(name, draw(STYLES))}</{p}name>{email}</{p}author>"


def ignored(p: str) -> list[str]:
    """Elements the server ignores: it sets id, published and updated itself (README)."""
    return [
        f"<{p}id>urn:uuid:00000000-0000-4000-8000-000000000000</{p}id>",
        f"<{p}updated>2001-02-03T04:05:06Z</{p}updated>",
        f"<{p}published>2001-02-03T04:05:06Z</{p}published>",
        f'<{p}link rel="alternate" href="http://example.org/"/>',
        f'<{p}category term="disk"/>',
        '<x:priority xmlns:x="urn:x">high</x:priority>',
    ]


# Content-Types publishers send entries with; a body that starts with "<" is an entry whatever
# its type (README, "What a message can be").
ENTRY_TYPES = st.sampled_from(
    ["application/atom+xml;type=entry", "application/atom+xml", "application/xml", "text/xml"]
    + ["application/x-www-form-urlencoded", "text/plain", "application/octet-stream", ""]
)
PROLOGS = st.sampled_from(
    ["", '<?xml version="1.0"?>\n', "<?xml version='1.0' encoding='UTF-8'?>", "\ufeff", "\n  "]
    + ['<?xml version="1.0" encoding="utf-8" standalone="yes"?><!-- from cron -->\n<?pi x?>']
)


@st.composite
def entries(draw: Any, broken: bool = False) -> tuple[bytes, str]:
    """(body, Content-Type) of an Atom entry the README says the server accepts; with `broken`,
    one that may break any rule, from a bad type to bytes that are not XML at all."""
    style = draw(st.sampled_from(["bare", "default", "prefixed"]))
    p = draw(st.sampled_from(["a:", "atom:"])) if style == "prefixed" else ""
    declarations = {"bare": "", "default": f' xmlns="{ATOM}"', "prefixed": f' xmlns:{p[:-1]}="{ATOM}"'}[style]
    parts = [draw(content(p + "content"))]
    if draw(st.booleans()):
        parts.append(draw(text_construct(p + "title")))
    if draw(st.booleans()):
        parts.append(draw(author(p)))
    if draw(st.booleans()):
        parts.append(draw(text_construct(p + "summary")))
    parts += draw(st.lists(st.sampled_from(ignored(p)), max_size=2, unique=True))
    if broken:
        parts = [
            draw(st.sampled_from(BROKEN_PARTS).map(lambda s: s.replace("{p}", p)))
            if draw(st.booleans())
            else part
            for part in parts
        ]
        parts += draw(st.lists(st.sampled_from(BROKEN_PARTS).map(lambda s: s.replace("{p}", p)), max_size=1))
    inner = "".join(draw(SPACE) + part for part in draw(st.permutations(parts))) + draw(SPACE)
    if draw(st.booleans()):  # the namespaces the content uses, declared once on the root
        declarations += "".join(f' xmlns:{pre}="{ns}"' for ns, pre in PREFIXES.items() if f"{pre}:" != p)
        inner = re.sub(r' xmlns:(h|w|x|atom)="[^"]*"', "", inner)
    prolog = draw(PROLOGS)
    root = f"{p}entry"
    if broken and draw(st.booleans()):
        prolog, root = draw(st.sampled_from(BROKEN_ROOTS))
        root = root.replace("{p}", p)
    body = f"{prolog}<{root}{declarations}>{inner}</{root.split()[0]}>".encode()
    if broken and draw(st.booleans()):
        body = draw(st.sampled_from(BYTE_MUTATIONS))(body, draw(st.integers(0, max(len(body) - 1, 0))))
    return body, draw(ENTRY_TYPES)


BROKEN_PARTS = [
    "",  # no content
    '<{p}content type="">x</{p}content>',
    '<{p}content type="markdown">x</{p}content>',
    '<{p}content type="/">x</{p}content>',
    '<{p}content type="text/">x</{p}content>',
    '<{p}content type="application/' + "x" * 300 + '">x</{p}content>',
    "<{p}content>a <b>bold</b></{p}content>",
    "<{p}content>a<!--c-->b</{p}content>",
    '<{p}content type="text/plain">a<x/>b</{p}content>',
    '<{p}content type="application/json">a<x/>b</{p}content>',
    '<{p}content type="xhtml"><p>no div</p></{p}content>',
    f'<{{p}}content type="xhtml">stray<div xmlns="{XHTML}">x</div></{{p}}content>',
    f'<{{p}}content type="xhtml"><div xmlns="{XHTML}">a</div><div xmlns="{XHTML}">b</div></{{p}}content>',
    f'<{{p}}content type="xhtml"><div xmlns="{XHTML}"><w:x xmlns:w="urn:w">alien</w:x></div></{{p}}content>',
    '<{p}content src="http://example.org/x"/>',
    "<{p}content>&nbsp;</{p}content>",
    "<{p}content>&#1;</{p}content>",
    "<{p}content>x</{p}content>",  # beside another: two contents
    '<{p}content type="application/x+xml">' + "<a>" * 300 + "</a>" * 300 + "</{p}content>",
    '<content xmlns="">x</content>',
    '<{p}title type="text/plain">t</{p}title>',
    '<{p}title type="">t</{p}title>',
    '<{p}title type="xhtml">no div</{p}title>',
    '<{p}summary type="application/json">e30=</{p}summary>',
    "<{p}summary>a<b/></{p}summary>",
    "<{p}summary>one</{p}summary><{p}summary>two</{p}summary>",
    "<{p}title>a<b/></{p}title>",
    "<{p}title>one</{p}title><{p}title>two</{p}title>",
    "<{p}author/>",
    "<{p}author><{p}name> \n</{p}name></{p}author>",
    "<{p}author><{p}name>a<b>c</b>d</{p}name></{p}author>",
    "<{p}author><{p}name>a<!--c-->b</{p}name></{p}author>",
    "<{p}author><{p}name>a</{p}name></{p}author><{p}author><{p}name>b</{p}name></{p}author>",
]
BROKEN_ROOTS = [
    ("", "{p}feed"),
    ("", "{p}Entry"),
    ("", 'entry xmlns="http://purl.org/atom/ns#"'),
    ("", 'o:entry xmlns:o="urn:other"'),
    ("", "undeclared:entry"),
    ('<!DOCTYPE entry [<!ENTITY x "y">]>', "{p}entry"),
    ('<!DOCTYPE entry SYSTEM "file:///etc/passwd">', "{p}entry"),
    ('<?xml version="1.1"?>', "{p}entry"),
    ('<?xml version="1.0" encoding="ISO-8859-1"?>', "{p}entry"),
    ('<?xml version="1.0" encoding="UTF-16"?>', "{p}entry"),
    ('<?xml version="1.0" encoding="no-such-thing"?>', "{p}entry"),
    (' <?xml version="1.0"?>', "{p}entry"),
    ("<?xml version='1.0'?>" + "<?pi x?>" * 40 + " " * 40, "{p}entry"),
    (" " * 40 + "<!-- -->" * 40, "{p}entry"),
]
BYTE_MUTATIONS: list[Callable[[bytes, int], bytes]] = [
    lambda body, i: body[:i],  # cut short
    lambda body, i: body[:i] + b"\xff" + body[i + 1 :],  # not UTF-8
    lambda body, i: body[:i] + b"\x00" + body[i:],
    lambda body, i: body + b"<trailing/>",
    lambda body, i: body.decode().encode("latin-1", "replace"),
    lambda body, i: body.decode().encode("utf-16"),
]


# ---------------------------------------------------------------------------------------------
# What came back


def inner(element: Any) -> str:
    """An element's content written out with each name as {namespace}local: the same content
    however its prefixes are spelt, as a prefix only stands for its namespace (Namespaces in
    XML 1.0, section 3). Comments and processing instructions count."""
    return _text(element.text) + "".join(_node(child) + _text(child.tail) for child in element)


def _text(text: str | None) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace("\r", "&#13;")


def _node(node: Any) -> str:
    if isinstance(node, etree._Comment):
        return f"<!--{node.text}-->"
    if isinstance(node, etree._ProcessingInstruction):
        return f"<?{node.target} {node.text}?>"
    attributes = "".join(f' {name}="{_text(value)}"' for name, value in sorted(node.attrib.items()))
    return f"<{node.tag}{attributes}>{inner(node)}</{node.tag}>"


def assert_same_construct(sent: Any, got: Any) -> None:
    if sent is None:  # no title sent: an empty one comes back
        assert (got.get("type"), inner(got)) == (None, "")
    else:
        assert (got.get("type"), inner(got)) == (sent.get("type"), inner(sent))


PLAIN_TYPES = ["", "text/plain", "application/x-www-form-urlencoded"]


def assert_comes_back_exactly(
    client: Client, feed: str, body: bytes, content_type: str, response: Any, before: list[str]
) -> None:
    """The message posted to `feed` is at its Location and at the end of that feed, as it was
    sent: as an Atom entry, as text, or as Base64 of the body (README, "What a message can be")."""
    location = response.headers["location"]
    message_id = "urn:uuid:" + location.rpartition("/entry=")[2]
    stored = client.get(location)
    assert stored.status == 200
    page = client.get(f"/feed={quote(feed, safe='')}")
    assert page.ids() == [*before, message_id]
    media = content_type.split(";")[0].strip().lower()
    is_entry = (
        media.endswith(("+xml", "/xml")) or body.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] == b"<"
    )
    for got, alone in ((response.xml(), True), (stored.xml(), True), (page.entries()[-1], False)):
        assert got.findtext("a:id", namespaces=ATOM_NS) == message_id
        if is_entry:
            assert_same_entry(body, got, alone)
            continue
        content = got.find("a:content", ATOM_NS)
        if media in PLAIN_TYPES or media.startswith("text/"):
            assert (content.get("type"), content.text) == (
                None if media in PLAIN_TYPES else media,
                body.decode(),
            )
        else:  # RFC 4287 4.1.3.3: Base64
            assert (content.get("type"), base64.b64decode(content.text)) == (media, body)
        assert_same_construct(None, got.find("a:title", ATOM_NS))


def assert_same_entry(body: bytes, got: Any, alone: bool) -> None:
    """`got` holds the title, content and author of the entry document `body`."""
    sent = etree.fromstring(body, PARSER)
    q = (lambda tag: f"{{{ATOM}}}{tag}") if etree.QName(sent).namespace == ATOM else (lambda tag: tag)
    assert_same_construct(sent.find(q("title")), got.find("a:title", ATOM_NS))
    assert_same_construct(sent.find(q("content")), got.find("a:content", ATOM_NS))
    summaries = got.findall("a:summary", ATOM_NS)
    if sent.find(q("summary")) is not None:
        assert len(summaries) == 1
        assert_same_construct(sent.find(q("summary")), summaries[0])
    else:  # none, or ours where RFC 4287 4.1.1.1 wants one (conftest checks when)
        assert len(summaries) <= 1 and summaries[0].get("type") is None if summaries else True
    name = sent.find(f"{q('author')}/{q('name')}")
    if name is not None:
        assert not name.xpath("*"), "accepted an <author><name> holding elements, which cannot come back"
        assert got.findtext("a:author/a:name", namespaces=ATOM_NS) == "".join(name.xpath("text()"))
    elif alone:  # a standalone entry names an author (RFC 4287 4.1.2); in a feed, the feed's does
        assert got.findtext("a:author/a:name", namespaces=ATOM_NS) == "AtomMQ"
    else:
        assert got.find("a:author", ATOM_NS) is None


def post(client: Client, target: str, body: bytes, content_type: str, **options: Any) -> Any:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.request("POST", target, body, headers, **options)
    note(f"POST {target} {content_type!r}: {response.status} {response.body[:300]!r}")
    return response


def state(client: Client, feed: str) -> tuple[int, list[str], str | None]:
    """What a consumer sees of a feed: its status, its message ids and its ETag."""
    response = client.get(f"/feed={quote(feed, safe='')}")
    assert response.status in (200, 404), response.text
    ids = response.ids() if response.status == 200 else []
    return response.status, ids, response.headers.get("etag")


def feed_names(client: Client) -> list[str]:
    response = client.get("/")
    assert response.status == 200
    return [
        c.findtext("a:title", namespaces=ATOM_NS)
        for c in response.xml().iterfind(".//app:collection", ATOM_NS)
    ]


# ---------------------------------------------------------------------------------------------
# Property 1: what is accepted comes back exactly


def test_every_valid_entry_is_accepted_and_comes_back_exactly_as_sent(client):
    @given(entries())
    @example((b'<entry><content type="application/x+xml"><order n="1">3</order></content></entry>', ""))
    @example((b'<entry><content type="application/xml">&#13;a<x/></content></entry>', "application/xml"))
    # lxml, moving these elements into the entry, wrote <atom:order> as <order>: in urn:w.
    @example(
        (
            b'<entry xmlns:atom="http://www.w3.org/2005/Atom"><content type="application/xml">'
            b'<order xmlns="urn:w"><atom:order/></order></content></entry>',
            "application/atom+xml;type=entry",
        )
    )
    def check(sent: tuple[bytes, str]) -> None:
        body, content_type = sent
        feed = fresh_feed("exact")
        response = post(client, f"/feed={feed}", body, content_type)
        assert response.status == 201, response.text
        assert_comes_back_exactly(client, feed, body, content_type, response, [])

    run(client, check, many=150)


@st.composite
def plain_bodies(draw: Any) -> tuple[bytes, str]:
    """A plain-text message: UTF-8 that does not start with "<" once a BOM and white space are
    taken off (README), sent as text/plain, text/*, form-encoded or without a type."""
    text = draw(
        texts().filter(
            lambda t: t.strip(" \t\r\n") and not t.removeprefix("\ufeff").lstrip(" \t\r\n").startswith("<")
        )
    )
    content_type = draw(
        st.sampled_from(
            [
                *PLAIN_TYPES,
                "text/plain; charset=utf-8",
                "TEXT/PLAIN",
                "application/x-www-form-urlencoded; charset=UTF-8",
            ]
        )
        | TEXT_MEDIA.filter(lambda t: len(t) < 60)
    )
    return text.encode("utf-8"), content_type


@st.composite
def media_bodies(draw: Any) -> tuple[bytes, str]:
    """Any bytes sent as a media type that is neither XML nor text: stored Base64-encoded."""
    body = draw(
        st.binary(min_size=1, max_size=300).filter(lambda b: not b.lstrip(b" \t\r\n").startswith(b"<"))
    )
    return body, draw(OTHER_MEDIA.filter(lambda t: len(t) < 60))


@pytest.mark.http
def test_plain_text_and_other_media_come_back_exactly_as_sent(client):
    @given(plain_bodies() | media_bodies())
    @example(("\ufefb<3 from the lam-alef ligature".encode(), "text/plain"))
    def check(sent: tuple[bytes, str]) -> None:
        body, content_type = sent
        feed = fresh_feed("plain")
        response = post(client, f"/feed={feed}", body, content_type)
        assert response.status == 201, response.text
        assert_comes_back_exactly(client, feed, body, content_type, response, [])

    run(client, check, many=100)


# ---------------------------------------------------------------------------------------------
# Properties 1 and 2 for any entry-like body: accepted exactly, or refused and nothing changed


def test_an_entry_is_either_accepted_exactly_as_sent_or_refused_with_nothing_stored(client):
    existing = "existing"
    client.publish(existing, "already here")

    @given(entries(broken=True), st.booleans())
    @example((b" " * 40 + b"x", "application/xml"), False)  # took hours: a prolog regex backtracked
    @example((b"<?pi x?>" * 40 + b"<entry><content>x</content></entry>", ""), False)
    @example((b'<entry><content type="">x</content></entry>', ""), True)
    @example((b"<entry><author><name>a<b>c</b>d</name></author><content>x</content></entry>", ""), True)
    def check(sent: tuple[bytes, str], to_existing: bool) -> None:
        body, content_type = sent
        feed = existing if to_existing else fresh_feed("maybe")
        before = state(client, feed) if to_existing else (404, [], None)
        response = post(client, f"/feed={feed}", body, content_type)
        if response.status == 201:
            assert_comes_back_exactly(client, feed, body, content_type, response, before[1])
        else:
            assert 400 <= response.status < 500
            assert state(client, feed) == before

    run(client, check, many=200)


# ---------------------------------------------------------------------------------------------
# Feed names


def variants(name: str) -> list[str]:
    """`name` and names that differ from it only in case or accents: all different feeds."""
    plain = "".join(c for c in unicodedata.normalize("NFD", name) if not unicodedata.combining(c))
    found = [name, name.swapcase(), name.upper(), name.lower(), unicodedata.normalize("NFC", plain)]
    return [n for n in dict.fromkeys(found) if FEED_NAME.match(n)]


VALID_NAMES = st.from_regex(r"\w[\w.-]{0,99}", fullmatch=True).filter(FEED_NAME.match)


@pytest.mark.http
def test_each_valid_feed_name_is_a_feed_of_its_own(client):
    @given(
        st.lists(VALID_NAMES, min_size=1, max_size=2).map(
            lambda names: [v for n in names for v in variants(n)][:4]
        )
    )
    @example(["Widgets", "widgets", "café", "cafe"])
    def check(names: list[str]) -> None:
        before = {name: state(client, name) for name in names}
        listed = feed_names(client)
        posted = {name: [] for name in names}
        for name in names:
            response = post(client, f"/feed={quote(name, safe='')}", name.encode(), "text/plain")
            assert response.status == 201, response.text
            assert response.headers["location"].startswith(
                f"http://localhost/atommq/feed={quote(name, safe='')}/entry="
            )
            posted[name].append(response.xml().findtext("a:id", namespaces=ATOM_NS))
        for name in names:
            page = client.get(f"/feed={quote(name, safe='')}")
            assert page.xml().findtext("a:title", namespaces=ATOM_NS) == name
            assert page.ids() == before[name][1] + posted[name], (
                f"feed {name!r} holds another feed's messages"
            )
        assert sorted(feed_names(client)) == sorted({*listed, *names})

    run(client, check, many=30)


# ---------------------------------------------------------------------------------------------
# Properties 2 and 3 for any request


@st.composite
def requests(
    draw: Any, web: bool, seeded: str, ids: list[str]
) -> tuple[str, str, dict[str, str], bytes, str | None]:
    """(method, target, headers, body, feed): any request a client can send; `feed` is the feed
    name the path names, when it is a valid one."""
    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    method = draw(
        st.sampled_from(methods)
        if web
        else st.sampled_from(methods) | st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True)
    )
    any_text = st.text(max_size=30)
    name = draw(
        st.sampled_from([seeded, seeded, ".hidden", "-x", "x" * 101, "a b", "a/b", ""])
        | VALID_NAMES
        | any_text
    )
    message = draw(
        st.sampled_from(
            [
                *ids,
                *(i.removeprefix("urn:uuid:") for i in ids),
                ids[0].upper(),
                "00000000-0000-0000-0000-000000000000",
            ]
        )
        | any_text
    )
    safe = draw(st.sampled_from(["", "=:@!$&'()*+,;~"]))
    shape = draw(st.sampled_from(["feed", "feed", "feed/", "entry", "root", "other"]))
    feed = name if shape in ("feed", "feed/", "entry") and FEED_NAME.match(name) else None
    path = {
        "feed": f"/feed={quote(name, safe=safe)}",
        "feed/": f"/feed={quote(name, safe=safe)}/",
        "entry": f"/feed={quote(name, safe=safe)}/entry={quote(message, safe=safe)}",
        "root": draw(st.sampled_from(["/", ""])),
        "other": draw(
            st.sampled_from(["/feeds/x", "/feed", "/feed=", "/feed=x/entry=", "/feed=x/entry=a/b"])
            | st.sampled_from(
                ["/feed=caf%E9", "/feed=%FF%FE", "/feed=a%00b", "/%00", "/feed=x/../feed=y", "/index.html"]
            )
        ),
    }[shape]
    key = st.sampled_from(["start_after", "start_at", "start_after", "x", "", "START_AFTER", "start%5Fafter"])
    value = (
        st.sampled_from([*ids, ids[-1].removeprefix("urn:uuid:"), "", "0", "\x00", "urn:uuid:"]) | any_text
    )
    pairs = draw(st.lists(st.tuples(key, value), max_size=3))
    query = "&".join(f"{k}={quote(v, safe=safe)}" for k, v in pairs)
    query += draw(st.sampled_from(["", "", "&", "%", "%zz", "%FF", ";x", "&" * 25]))
    header_text = st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
    ).map(str.strip)
    headers = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "Content-Type": st.sampled_from(
                    ["application/atom+xml", "text/plain", "application/json", "nonsense", "a/" + "b" * 300]
                )
                | header_text,
                "If-None-Match": st.sampled_from(["*", '"x"', 'W/"x"']) | header_text,
                "Idempotency-Key": st.sampled_from(["k1", "k2", "a b", "x" * 201]) | header_text,
                "Accept": header_text,
                "Slug": header_text,
            },
        )
    )
    body = draw(
        st.sampled_from([b""])
        | entries().map(lambda e: e[0])
        | entries(broken=True).map(lambda e: e[0])
        | st.binary(max_size=100)
        | texts().map(str.encode)
    )
    return method, path + (f"?{query}" if query else ""), headers, body, feed


@pytest.mark.http
@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")  # wsgiref.validate's, on odd methods
def test_no_request_gets_a_5xx_and_one_refused_changes_nothing(client):
    seeded = "seeded"
    ids = [
        client.publish(seeded, f"message {i}").xml().findtext("a:id", namespaces=ATOM_NS) for i in range(2)
    ]
    web = client.kind in webservers.KINDS

    @given(requests(web, seeded, ids))
    @example(("GET", "/feed=seeded?start_after=%00", {}, b"", "seeded"))
    @example(("GET", "/feed=seeded/entry=%00", {}, b"", "seeded"))
    @example(("POST", "/feed=x", {"Content-Type": "a/" + "b" * 300}, b"{}", "x"))
    def check(sent: tuple[str, str, dict[str, str], bytes, str | None]) -> None:
        method, target, headers, body, feed = sent
        if client.kind == "cgi" and "%00" in target.partition("?")[0]:
            return  # the path goes to a CGI script in an environment variable, which cannot hold NUL
        watched = sorted({seeded, *([feed] if feed else [])})
        before = ({name: state(client, name) for name in watched}, feed_names(client))
        response = client.request(method, target, body, headers, server_may_refuse=True)
        note(f"{method} {target} {headers}: {response.status} {response.body[:300]!r}")
        if web and (
            response.status < 400 or response.headers.get("content-type", "").startswith("text/plain")
        ):
            Client.check(method, response)  # AtomMQ's answer; a web server's own error page is not
        assert response.status < 500
        after = ({name: state(client, name) for name in watched}, feed_names(client))
        if response.status == 201 and "idempotent-replayed" not in response.headers:
            assert method == "POST" and feed is not None
            content_type = headers.get("Content-Type", "")
            assert_comes_back_exactly(client, feed, body, content_type, response, before[0][feed][1])
            assert sorted(after[1]) == sorted({*before[1], feed})
            assert {n: s for n, s in after[0].items() if n != feed} == {
                n: s for n, s in before[0].items() if n != feed
            }
        else:
            assert after == before

    run(client, check, many=150)
