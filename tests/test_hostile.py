"""Hostile input, through every gateway and web server and on every database: entity and DTD attacks, structure bombs, broken UTF-8,
control characters, CR/LF aimed at headers, path and method tricks, SQL metacharacters,
query-string tricks, lying and truncated lengths, slow bodies.

A refused case gets the documented 4xx with AtomMQ's one line of text (or, for a request a web
server finds malformed, that server's own refusal), in far less time than a hang or a
backtracking blow-up would take (Corpus.allowance); it shows no file contents, traceback or SQL;
it stores nothing; and
the server goes on serving. A case the server rightly accepts comes back exactly as it was sent.
"""

import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

import fastcgi_client
import webservers
from conftest import ATOM_NS, TRANSPORTS, Client, Response, parse_cgi_output

ATOM_XML = {"Content-Type": "application/atom+xml"}
TEXT = {"Content-Type": "text/plain"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends
XML_MEDIA_TYPE = "application/vnd.x+xml"  # content of this type holds any XML
# What no answer may show, unless the client sent it itself (an error may quote the bad value).
LEAKS = ("root:", "Traceback", 'File "', "SELECT", "INSERT", "[SQL:")
LEAKS_ANY_CASE = ("sqlite", "sqlalchemy", "psycopg", "pymysql", "mysql", "postgres")
# How a real web server may refuse a request it finds malformed before AtomMQ sees it.
SERVER_REFUSALS = (400, 403, 404, 414, 431)
# Transports where each request is a process of its own: nothing one request does can outlive
# it except in the database, which each test checks at its end. The others, long-running, are
# checked with an ordinary request after every case.
PROCESS_PER_REQUEST = ("cgi", "lighttpd-cgi", "apache-cgi", "apache-htaccess")
WEB_SERVERS = [t for t in TRANSPORTS if t in webservers.KINDS]
FASTCGI_OR_WEB = [t for t in TRANSPORTS if t.startswith("fastcgi") or t in webservers.KINDS]
# Hostile requests are HTTP in every part: every gateway and web server, and every database.
pytestmark = pytest.mark.http
XXE_FILE = (
    '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<entry><content>&x;</content></entry>"
)


def entry(content: str, content_type: str = "", title: str = "t") -> str:
    typed = f' type="{content_type}"' if content_type else ""
    return f"<entry><title>{title}</title><content{typed}>{content}</content></entry>"


def nested(depth: int) -> str:
    """An entry whose document is `depth` elements deep: entry, content, then a chain of <a>."""
    chain = depth - 2
    return entry("<a>" * chain + "</a>" * chain, XML_MEDIA_TYPE)


def text_of(document: Any, name: str = "content") -> str | None:
    return document.findtext(f"a:{name}", namespaces=ATOM_NS)  # type: ignore[no-any-return]


def is_ours(response: Response) -> bool:
    """AtomMQ's own answer, rather than a web server's error page."""
    return response.headers.get("content-type", "").startswith(("text/plain", "application/atom"))


@dataclass
class Corpus:
    """One client's run through many cases, and what its store must hold afterwards: in feed
    `widgets`, the (id, content) of `messages`; and no feeds but `feeds`."""

    client: Client
    # Seconds any answer may take: well short of a hang (a web server's 60 s, or for ever) or a
    # backtracking blow-up (hours), and far above a busy machine's slowest trivial request.
    allowance: float
    messages: list[tuple[str | None, str | None]]
    feeds: set[str] = field(default_factory=lambda: {"widgets"})
    last: str = "the set-up"

    @classmethod
    def start(cls, client: Client) -> "Corpus":
        client.publish("widgets", "a message that every case must leave alone")  # starts any server
        started = time.monotonic()
        before = client.get("/feed=widgets")
        messages = [(text_of(e, "id"), text_of(e)) for e in before.entries()]
        return cls(client, 3 * (time.monotonic() - started) + 15.0, messages)

    def send(
        self,
        case: str,
        method: str,
        target: str,
        body: str | bytes = b"",
        headers: dict[str, str] | None = None,
        refusable: bool = False,
        **options: Any,
    ) -> Response:
        data = body.encode("utf-8") if isinstance(body, str) else body
        started = time.monotonic()
        response = self.client.request(method, target, data, headers, server_may_refuse=refusable, **options)
        elapsed = time.monotonic() - started
        self.last = case
        assert elapsed < self.allowance, (
            f"{case}: answered in {elapsed:.2f} s; allowed {self.allowance:.2f} s "
            "(a trivial request's time thrice, plus 15 s)"
        )
        sent = b" ".join(
            [target.encode("utf-8", "surrogateescape"), data, *map(str.encode, (headers or {}).values())]
        )
        assert_nothing_leaked(case, response, sent)
        if refusable and is_ours(response):  # conftest left AtomMQ's own answer unchecked
            Client.check(method, response)
        return response

    def refuse(
        self,
        case: str,
        method: str,
        target: str,
        body: str | bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        status: int = 400,
        reason: str = "",
        refusable: bool = False,
        **options: Any,
    ) -> Response:
        """The case must be refused: `status` and a line that contains `reason` from AtomMQ, or
        (`refusable`) a web server's own refusal; then nothing stored, and the server serving."""
        response = self.send(case, method, target, body, headers, refusable, **options)
        if refusable and self.client.kind in webservers.KINDS and not is_ours(response):
            assert response.status in SERVER_REFUSALS, f"{case}: the web server answered {response.status}"
        else:
            assert response.status == status, f"{case}: {response.status} {response.text!r}"
            assert reason in response.text, f"{case}: {response.text!r} does not say {reason!r}"
        if self.client.kind not in PROCESS_PER_REQUEST:
            self.assert_store_unchanged()
        return response

    def accept(
        self,
        case: str,
        target: str,
        body: str | bytes,
        headers: dict[str, str] | None = None,
        feed: str = "widgets",
    ) -> Response:
        """The case must be stored: 201. A message stored in `widgets` must then be read back
        from the database as the 201 showed it (checked with the feed, after later cases)."""
        response = self.send(case, "POST", target, body, headers or ATOM_XML)
        assert response.status == 201, f"{case}: {response.status} {response.text!r}"
        self.feeds.add(feed)
        if feed == "widgets":
            self.messages.append((text_of(response.xml(), "id"), text_of(response.xml())))
        return response

    def assert_store_unchanged(self) -> None:
        """An ordinary request succeeds, and the feed holds what it held."""
        response = self.client.get("/feed=widgets")
        assert response.status == 200, f"after {self.last}: {response.status} {response.text!r}"
        stored = [(text_of(e, "id"), text_of(e)) for e in response.entries()]
        assert stored == self.messages, f"after {self.last}, feed widgets holds {[m[1] for m in stored]}"

    def finish(self) -> Any:
        """No refused case left anything behind: each refused POST went to a feed named after its
        case, so a feed that should not exist names the case that made it. Returns the service
        document."""
        self.assert_store_unchanged()
        service = self.client.get("/").xml()
        titles = {text_of(c, "title") for c in service.findall("app:workspace/app:collection", ATOM_NS)}
        assert titles == self.feeds, f"refused cases created feeds: {sorted(titles - self.feeds)}"
        return service


def assert_nothing_leaked(case: str, response: Response, sent: bytes) -> None:
    body, lowered = response.body, response.body.lower()
    for marker in LEAKS:
        if marker.encode() not in sent:
            assert marker.encode() not in body, f"{case}: the answer shows {marker!r}: {body[:300]!r}"
    for marker in LEAKS_ANY_CASE:
        if marker.encode() not in sent.lower():
            assert marker.encode() not in lowered, f"{case}: the answer shows {marker!r}: {body[:300]!r}"
    for name, value in response.headers.items():
        assert "\r" not in value and "\n" not in value, f"{case}: header {name} was split: {value!r}"


def listening_canary() -> socket.socket:
    """A port on which a fetch by the XML parser would show up (and hang, as nothing answers)."""
    canary = socket.socket()
    canary.bind(("127.0.0.1", 0))
    canary.listen(8)
    canary.setblocking(False)
    return canary


def entity_attacks(port: int) -> dict[str, tuple[bytes, str]]:
    """Entities and DTDs: each must be refused unexpanded and unfetched."""
    url = f"http://127.0.0.1:{port}"
    lol = "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 or "")) * 10}">' for i in range(1, 10))
    cases = {
        "xxe-file": (XXE_FILE, "DOCTYPE"),
        "xxe-http": (f'<!DOCTYPE e [<!ENTITY x SYSTEM "{url}/x">]>{entry("&x;")}', "DOCTYPE"),
        "parameter-entity": (
            f'<!DOCTYPE e [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>{entry("&x;")}',
            "DOCTYPE",
        ),
        "external-dtd": (f'<!DOCTYPE entry SYSTEM "{url}/entry.dtd">{entry("x")}', "DOCTYPE"),
        "billion-laughs": (
            f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{lol}]>{entry("&lol9;")}',
            "DOCTYPE",
        ),
        "quadratic-blowup": (
            f'<!DOCTYPE e [<!ENTITY a "{"a" * 20_000}">]>{entry("&a;" * 20_000)}',
            "DOCTYPE",
        ),
        "doctype-after-comment-and-pi": (
            f'<?xml version="1.0"?>\n<!-- hi --><?pi x?>\n{XXE_FILE.partition("?>")[2]}',
            "DOCTYPE",
        ),
        "doctype-sent-as-a-form": (XXE_FILE, "DOCTYPE"),  # POSTed with curl -d's Content-Type
    }
    encoded = {name: (body.encode(), reason) for name, (body, reason) in cases.items()}
    encoded["doctype-after-bom"] = (b"\xef\xbb\xbf" + XXE_FILE.encode(), "DOCTYPE")
    encoded["doctype-in-utf-16"] = (
        XXE_FILE.replace('"1.0"', '"1.0" encoding="UTF-16"').encode("utf-16"),
        "UTF-8",
    )
    # UTF-7 hides every '<' of the DOCTYPE from a byte-level check; the body is read as UTF-8.
    utf7 = XXE_FILE.partition("?>")[2].encode("utf-7").replace(b"<", b"+ADw-")
    encoded["doctype-in-utf-7"] = (b'<?xml version="1.0" encoding="UTF-7"?>' + utf7, "not well-formed")
    return encoded


def test_entities_and_dtds_are_refused_and_nothing_is_fetched(client):
    canary = listening_canary()
    try:
        corpus = Corpus.start(client)
        for case, (body, reason) in entity_attacks(canary.getsockname()[1]).items():
            headers = FORM if case == "doctype-sent-as-a-form" else ATOM_XML
            corpus.refuse(case, "POST", f"/feed={case}", body, headers, reason=reason)
        # XInclude is never processed: the element is kept as the XML it is, nothing is read.
        xinclude = (
            '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" parse="text"/>'
        )
        stored = corpus.accept("xinclude", "/feed=widgets", entry(xinclude, XML_MEDIA_TYPE)).xml()
        content = stored.find("a:content", ATOM_NS)
        assert [child.tag for child in content] == ["{http://www.w3.org/2001/XInclude}include"]
        assert content[0].get("href") == "file:///etc/passwd" and not (content[0].text or "")
        corpus.finish()
        with pytest.raises(BlockingIOError):
            canary.accept()  # nobody connected: no entity or DTD was fetched
    finally:
        canary.close()


def test_structure_bombs_are_refused_and_big_harmless_ones_accepted(client):
    corpus = Corpus.start(client)
    refused = {
        "deep-nesting": nested(100_000),
        "deep-nesting-never-closed": entry("<a>" * 100_000, XML_MEDIA_TYPE),
        "one-level-too-deep": nested(256),  # its feed would be 257 deep: parsers stop at 256
    }
    for case, body in refused.items():
        corpus.refuse(case, "POST", f"/feed={case}", body, ATOM_XML, reason="255 levels deep")
    corpus.refuse(
        "name-too-long",
        "POST",
        "/feed=name-too-long",
        entry(f"<{'n' * 60_000}/>", XML_MEDIA_TYPE),
        ATOM_XML,
        reason="not well-formed",
    )
    # At the limit: stored, and the feed that holds it is still within what a stock parser
    # reads (conftest parses and validates every document it receives).
    deep = corpus.accept("at-the-depth-limit", "/feed=deep", nested(255), feed="deep").xml()
    assert max(len(list(element.iterancestors())) for element in deep.iter()) == 254  # 255 deep
    assert len(client.get("/feed=deep").entries()) == 1
    harmless = {
        "huge-attribute": f'<content x="{"x" * 900_000}">',
        "many-attributes": "<content " + " ".join(f'a{i}="1"' for i in range(50_000)) + ">",
        "many-namespaces": "<content " + " ".join(f'xmlns:n{i}="urn:{i}"' for i in range(30_000)) + ">",
    }
    for case, start_tag in harmless.items():
        stored = corpus.accept(case, "/feed=widgets", f"<entry>{start_tag}{case}</content></entry>").xml()
        assert text_of(stored) == case
    corpus.finish()


def test_broken_utf8_and_byte_order_mark_tricks(client):
    corpus = Corpus.start(client)
    not_utf8 = {
        "latin-1-text": b"caf\xe9",
        "overlong-nul": b"a\xc0\x80b",
        "surrogate-half": b"a\xed\xa0\x80b",
        "beyond-u10ffff": b"a\xf4\x90\x80\x80b",
        "cut-sequence": b"caf\xc3",
        "utf-16-text": "hello".encode("utf-16"),
    }
    for case, body in not_utf8.items():
        corpus.refuse(case, "POST", f"/feed={case}", body, TEXT, reason="UTF-8")
    xml_not_utf8 = {
        "latin-1-entry": entry("caf\xe9").encode("latin-1"),
        "overlong-markup-in-entry": b"<entry><content>\xc0\xbcscript\xc0\xbe</content></entry>",
        "utf-32-entry": entry("x").encode("utf-32"),
    }
    for case, body in xml_not_utf8.items():
        corpus.refuse(case, "POST", f"/feed={case}", body, ATOM_XML, reason="UTF-8")
    corpus.refuse(
        "two-byte-order-marks",
        "POST",
        "/feed=two-byte-order-marks",
        b"\xef\xbb\xbf" * 2 + entry("x").encode(),
        ATOM_XML,
        reason="not well-formed",
    )
    for case, target in {
        "latin-1-feed-name": "/feed=caf%E9",
        "overlong-dots-feed-name": "/feed=%C0%AE%C0%AE",
    }.items():
        corpus.refuse(case, "POST", target, entry("x"), ATOM_XML, reason="UTF-8", refusable=True)
    # A byte-order mark is no part of a feed name: this is not the feed widgets.
    corpus.refuse("bom-feed-name", "POST", "/feed=%EF%BB%BFwidgets", entry("x"), ATOM_XML, reason="feed name")
    # Accepted: a BOM before UTF-8 (text keeps it, as sent; XML reads past it), and an XML
    # declaration that names another encoding, which never turns UTF-8 into other characters.
    stored = corpus.accept("bom-text", "/feed=widgets", b"\xef\xbb\xbfhello", TEXT).xml()
    assert text_of(stored) == "\ufeffhello"
    stored = corpus.accept("bom-entry", "/feed=widgets", b"\xef\xbb\xbf" + entry("hello").encode()).xml()
    assert text_of(stored) == "hello"
    for case, encoding, content in [
        ("declares-latin-1", "ISO-8859-1", "café"),
        ("declares-utf-7", "UTF-7", "+ADw-b+AD4-"),
    ]:
        body = f'<?xml version="1.0" encoding="{encoding}"?>{entry(content)}'.encode()
        assert text_of(corpus.accept(case, "/feed=widgets", body).xml()) == content, case
    corpus.finish()


def test_nul_and_control_characters_are_refused(client):
    corpus = Corpus.start(client)
    for case, text in {
        "bell-in-text": "bell \x07 in text",
        "nul-in-text": "nul \x00",
        "noncharacter-in-text": "noncharacter \uffff",
    }.items():
        corpus.refuse(case, "POST", f"/feed={case}", text.encode(), TEXT, reason="XML cannot carry")
    for case, body in {
        "nul-in-entry": entry("a\x00b"),
        "escape-in-title": entry("x", title="a\x1bb"),
        "nul-reference": entry("a&#0;b"),
        "noncharacter-reference": entry("a&#xFFFE;b"),
        "xml-1.1-control-reference": '<?xml version="1.1"?>' + entry("a&#x1;b"),
    }.items():
        corpus.refuse(case, "POST", f"/feed={case}", body, ATOM_XML, reason="not well-formed")
    corpus.refuse(
        "newline-in-content-type",
        "POST",
        "/feed=newline-in-content-type",
        entry("x", "text/x&#10;y"),
        ATOM_XML,
        reason="not allowed",
    )
    if client.kind != "cgi":  # an environment variable cannot hold NUL: no server passes one to CGI
        corpus.refuse(
            "nul-in-feed-name",
            "POST",
            "/feed=wid%00gets",
            entry("x"),
            ATOM_XML,
            reason="U+0000",
            refusable=True,
        )
        corpus.refuse("nul-in-entry-id", "GET", "/feed=widgets/entry=%00", reason="U+0000", refusable=True)
    corpus.refuse(
        "nul-in-cursor", "GET", "/feed=widgets?start_after=%00", reason="control character", refusable=True
    )
    corpus.refuse(
        "bell-in-idempotency-key",
        "POST",
        "/feed=bell-in-idempotency-key",
        entry("x"),
        {**ATOM_XML, "Idempotency-Key": "a\x07b"},
        reason="Idempotency-Key",
        refusable=True,
    )
    corpus.refuse(
        "control-in-content-type",
        "POST",
        "/feed=control-in-content-type",
        b"x",
        {"Content-Type": "text/plain\x01"},
        reason="not a media type",
        refusable=True,
    )
    corpus.finish()


def test_crlf_never_splits_a_header_and_what_is_written_is_escaped(client):
    corpus = Corpus.start(client)
    injections = {
        "crlf-in-feed-name": ("POST", "/feed=a%0D%0ALocation:%20http://evil.example/", "U+000D"),
        "crlf-in-cursor": (
            "GET",
            "/feed=widgets?start_after=x%0D%0ASet-Cookie:%20stolen=1",
            "control character",
        ),
        "crlf-in-entry-id": ("GET", "/feed=widgets/entry=x%0D%0ALocation:%20http://evil.example/", "U+000D"),
        "crlf-in-parameter-name": ("GET", "/feed=widgets?%0D%0ASet-Cookie:%20stolen=1", "unknown parameter"),
    }
    for case, (method, target, reason) in injections.items():
        body, headers = (entry("x"), ATOM_XML) if method == "POST" else (b"", None)
        response = corpus.refuse(case, method, target, body, headers, reason=reason, refusable=True)
        assert "set-cookie" not in response.headers, case
        assert "evil.example" not in response.headers.get("location", ""), case

    # Text that means something to XML, HTML or SQL comes back as sent; CR survives as a
    # character reference (a parser turns a raw CR into LF).
    text = "a < b & c > d \"q\" 'a' ]]> <script>x</script> line1\r\nline2\rline3\n\ttab"
    response = corpus.accept("markup-and-line-ends", "/feed=widgets", text, TEXT)
    assert b"<script>" not in response.body and b"&#13;" in response.body
    assert text_of(response.xml()) == text
    stored = corpus.accept(
        "escaped-markup-in-an-entry",
        "/feed=widgets",
        "<entry><title>&lt;b&gt; &amp; \"</title><author><name>&lt;x&gt;&amp;'</name></author>"
        '<content type="html">&lt;script&gt;alert(1)&lt;/script&gt;<![CDATA[<i>&</i>]]></content></entry>',
    ).xml()
    assert text_of(stored, "title") == '<b> & "'
    assert stored.findtext("a:author/a:name", namespaces=ATOM_NS) == "<x>&'"
    assert text_of(stored) == "<script>alert(1)</script><i>&</i>"
    assert len(stored.find("a:content", ATOM_NS)) == 0  # the markup stayed text

    # Feed names that a URL must percent-encode: in Location, the self link, the service document.
    names = {"日本語": "%E6%97%A5%E6%9C%AC%E8%AA%9E", "a.b-c_d": "a.b-c_d", "_": "_"}
    for name, encoded in names.items():
        location = corpus.accept(f"feed-name-{encoded}", f"/feed={encoded}", entry(name), feed=name).headers[
            "location"
        ]
        assert location.isascii() and " " not in location, location
        assert location.startswith(f"http://localhost/atommq/feed={encoded}/entry="), location
    feed = client.get(f"/feed={names['日本語']}")
    assert (feed.link("self"), text_of(feed.xml(), "title")) == (
        f"http://localhost/atommq/feed={names['日本語']}",
        "日本語",
    )

    # A Host header that is no host name: links fall back to the server's own name.
    response = corpus.send(
        "markup-in-host",
        "POST",
        "/feed=widgets",
        b"host",
        {**TEXT, "Host": 'localhost"><x y="'},
        refusable=True,
    )
    if is_ours(response):
        assert response.status == 201, response.text
        corpus.messages.append((text_of(response.xml(), "id"), "host"))
        assert response.headers["location"].startswith("http://localhost/atommq/feed=widgets/entry=")
    else:  # a web server refuses a malformed or second Host header itself
        assert response.status == 400
    service = corpus.finish()
    hrefs = {c.get("href") for c in service.iter("{http://www.w3.org/2007/app}collection")}
    assert {f"http://localhost/atommq/feed={encoded}" for encoded in names.values()} <= hrefs


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")  # it names PROPFIND
def test_url_tricks_reach_no_file_and_no_other_feed(client):
    corpus = Corpus.start(client)
    paths = {
        "dot-dot-feed-name": ("POST", "/feed=..", 400, "feed name"),
        "traversal": ("GET", "/feed=..%2F..%2F..%2Fetc%2Fpasswd", 404, "no resource"),
        "absolute-path-name": ("GET", "/feed=%2Fetc%2Fpasswd", 404, "no resource"),
        "backslash-traversal": ("GET", "/feed=..%5C..%5Cetc%5Cpasswd", 400, "feed name"),
        "double-encoded-dots": ("GET", "/feed=%252E%252E%252Fatommq.db", 400, "feed name"),
        "entry-traversal": ("GET", "/feed=widgets/entry=..%2F..%2Fatommq.db", 404, ""),
        "path-parameter": ("GET", "/feed=widgets;type=a", 400, "feed name"),
        "tilde-home": ("GET", "/feed=~root", 400, "feed name"),
        "webdav-method": ("PROPFIND", "/feed=widgets", 405, "not allowed"),
    }
    for case, (method, target, status, reason) in paths.items():
        body, headers = (b"", None) if method == "GET" else (entry("x"), ATOM_XML)
        corpus.refuse(case, method, target, body, headers, status=status, reason=reason, refusable=True)
    first = corpus.messages[0][0]
    queries = {
        "long-cursor": ("start_after=" + "x" * 6_000, "no message"),
        "huge-cursor": ("start_after=" + "x" * 100_000, "no message"),  # web servers: 414 or 431
        "many-parameters": ("&".join(["a=1"] * 1_000), "not valid"),
        "same-cursor-twice": (f"start_after={first}&start_after={first}", "once"),
        "encoded-duplicate-name": (f"start%5Fafter={first}&start_after={first}", "once"),
        "semicolon-separator": (f"start_after={first};start_at={first}", "no message"),
        "array-syntax": (f"start_after[]={first}", "unknown parameter"),
        "bad-percent-escape": ("start_after=%zz", "no message"),
        "cursor-not-utf8": ("start_after=%E9", "not valid"),
    }
    for case, (query, reason) in queries.items():
        corpus.refuse(case, "GET", f"/feed=widgets?{query}", reason=reason, refusable=case == "huge-cursor")
    # A query on a POST is no routing: the message goes where the path says.
    assert (
        text_of(corpus.accept("query-on-a-post", "/feed=widgets?feed=other", "query", TEXT).xml()) == "query"
    )
    corpus.finish()


def test_sql_metacharacters_are_only_text(client):
    corpus = Corpus.start(client)
    for case, text in {
        "drop-table": "'; DROP TABLE atommq_messages; --",
        "driver-placeholders": "%s %(name)s ? :name $1 {0} \\' \\0 \\\\ ` \" LIKE '%_%'",
    }.items():
        assert text_of(corpus.accept(case, "/feed=widgets", text, TEXT).xml()) == text, case
    stored = corpus.accept(
        "tautologies-in-an-entry",
        "/feed=widgets",
        '<entry><title>" OR ""="</title><author><name>\'); DELETE FROM atommq_feeds; --</name></author>'
        "<content>1' OR '1'='1</content></entry>",
    ).xml()
    assert (text_of(stored, "title"), text_of(stored)) == ('" OR ""="', "1' OR '1'='1")
    assert stored.findtext("a:author/a:name", namespaces=ATOM_NS) == "'); DELETE FROM atommq_feeds; --"

    # Idempotency keys are compared as whole strings: a quote neither matches all nor breaks.
    key, other = "'OR'1'='1;--", "'OR'1'='2;--"
    first = corpus.accept(
        "sql-in-idempotency-key", "/feed=widgets", "keyed", {**TEXT, "Idempotency-Key": key}
    )
    again = corpus.send("same-key-again", "POST", "/feed=widgets", "retry", {**TEXT, "Idempotency-Key": key})
    assert (again.status, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.headers["location"] == first.headers["location"]
    third = corpus.accept("other-key", "/feed=widgets", "other", {**TEXT, "Idempotency-Key": other})
    assert "idempotent-replayed" not in third.headers

    # '_' is a LIKE wildcard: feed names are compared whole.
    corpus.accept("like-wildcard-feed", "/feed=ab", entry("x"), feed="ab")
    corpus.refuse("underscore-for-a-letter", "GET", "/feed=a_", status=404, reason="does not exist")
    corpus.refuse(
        "sql-in-feed-name",
        "POST",
        "/feed=x'%20OR%20'1'='1",
        entry("x"),
        ATOM_XML,
        reason="feed name",
        refusable=True,
    )
    corpus.refuse(
        "sql-in-cursor", "GET", "/feed=widgets?start_after=%27%20OR%20%271%27%3D%271", reason="no message"
    )
    corpus.refuse(
        "union-in-cursor",
        "GET",
        "/feed=widgets?start_after=x%27%20UNION%20SELECT%20name%20FROM%20sqlite_master%20--",
        reason="no message",
    )
    corpus.refuse(
        "sql-in-entry-id",
        "GET",
        "/feed=widgets/entry=%27%20OR%20%271%27%3D%271",
        status=404,
        reason="no message",
    )
    corpus.refuse(
        "sql-in-content-type",
        "POST",
        "/feed=sql-in-content-type",
        b"x",
        {"Content-Type": "text/plain';--"},
        reason="not a media type",
    )
    corpus.finish()


def test_body_lengths_around_the_limit_and_lengths_that_lie(make_client):
    client = make_client(max_body_bytes="1000")
    corpus = Corpus.start(client)
    assert (
        text_of(corpus.accept("multibyte-at-the-limit", "/feed=widgets", "é" * 500, TEXT).xml()) == "é" * 500
    )
    corpus.refuse(
        "multibyte-over-the-limit", "POST", "/feed=over", "é" * 500 + "x", TEXT, status=413, reason="1000"
    )
    if client.kind in webservers.KINDS:
        corpus.finish()
        return  # a web server checks Content-Length itself: see the raw-socket tests below
    lies = {
        # (announced length, body, status, reason)
        "announces-a-huge-body": ("99999999999", b"x", 413, "1000"),
        "truncated-text": ("100", b"the first half of a message", 400, "ended after 27 of the 100 bytes"),
        "truncated-entry": ("200", entry("the first half").encode(), 400, "ended after"),
    }
    if client.kind != "wsgi":  # a WSGI server guarantees a number (PEP 3333; wsgiref.validate checks)
        lies["length-not-a-number"] = ("ten", b"x", 400, "Content-Length")
        lies["negative-length"] = ("-1", b"x", 400, "Content-Length")
        lies["length-in-other-digits"] = ("\u0661\u0660", b"0123456789", 400, "Content-Length")
    for case, (length, body, status, reason) in lies.items():
        corpus.refuse(
            case, "POST", f"/feed={case}", body, TEXT, status=status, reason=reason, content_length=length
        )
    corpus.finish()


def http_exchange(client: Client, parts: list[bytes], pause: float = 0.0, timeout: float = 5.0) -> bytes:
    """Send `parts` to the web server on a raw socket (sleeping `pause` between them), close the
    sending side, and return whatever it answers (b"" when it just closes)."""
    with socket.create_connection(("127.0.0.1", client.web_server.port), timeout=timeout) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(pause)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def status_of(answer: bytes) -> int | None:
    line = answer.partition(b"\r\n")[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else None


POST_HEAD = (
    b"POST /atommq/feed=%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain\r\n"
)


@pytest.mark.parametrize("transport", WEB_SERVERS)
def test_truncated_and_conflicting_uploads_store_nothing_over_http(client):
    corpus = Corpus.start(client)
    cases = {
        "truncated": [POST_HEAD % b"truncated", b"Content-Length: 40\r\n\r\nhalf a message"],
        "truncated-chunked": [
            POST_HEAD % b"truncated-chunked",
            b"Transfer-Encoding: chunked\r\n\r\n28\r\nhalf a message",
        ],
        "two-lengths": [POST_HEAD % b"two-lengths", b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
        "negative-length": [POST_HEAD % b"negative-length", b"Content-Length: -1\r\n\r\nx"],
    }
    for case, parts in cases.items():
        started = time.monotonic()
        answer = http_exchange(client, parts)
        assert time.monotonic() - started < corpus.allowance, case
        assert status_of(answer) in (None, 400, 408, 500), f"{case}: {answer[:200]!r}"  # never stored
        assert_nothing_leaked(case, Response(0, {}, answer), b"".join(parts))
        corpus.last = case
        corpus.assert_store_unchanged()
    # Content-Length and chunked together: chunked wins (RFC 9112 6.3), or the server refuses.
    answer = http_exchange(
        client,
        [
            POST_HEAD % b"smuggled",
            b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ],
    )
    if status_of(answer) == 201:
        corpus.feeds.add("smuggled")
        assert [text_of(e) for e in client.get("/feed=smuggled").entries()] == ["hello"]
    else:
        assert status_of(answer) == 400, answer[:200]
    corpus.finish()
    assert "Traceback" not in client.log  # a client that goes away is no error


@pytest.mark.parametrize("transport", WEB_SERVERS)
def test_a_length_over_the_limit_is_refused_before_the_body_arrives(client):
    corpus = Corpus.start(client)
    started = time.monotonic()
    answer = http_exchange(
        client, [POST_HEAD % b"huge", b"Content-Length: 99999999999\r\n\r\nx"], timeout=corpus.allowance
    )
    assert status_of(answer) == 413, answer[:200]
    assert time.monotonic() - started < corpus.allowance
    corpus.finish()


def fastcgi_trickle(
    client: Client, body: bytes, pause: float, announced: int | None = None
) -> Response | None:
    """POST `body` to the FastCGI server one byte a record, `pause` apart. With `announced`
    longer than the body, the connection is dropped mid-body instead: None."""
    params = fastcgi_client.meta_variables("POST", "/feed=widgets", headers={"Content-Type": "text/plain"})
    params["CONTENT_LENGTH"] = str(len(body) if announced is None else announced)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(client.fastcgi_server.socket))
        sock.sendall(
            fastcgi_client.begin_request()
            + fastcgi_client.stream(fastcgi_client.PARAMS, fastcgi_client.encode_params(params))
        )
        for byte in body:
            sock.sendall(fastcgi_client.record(fastcgi_client.STDIN, bytes([byte])))
            time.sleep(pause)
        if announced is not None:
            return None  # the web server's connection breaks mid-body
        sock.sendall(fastcgi_client.record(fastcgi_client.STDIN, b""))
        return parse_cgi_output(fastcgi_client.read_response(sock)[0])


@pytest.mark.parametrize("transport", FASTCGI_OR_WEB)
def test_a_slow_body_is_stored_whole_and_a_broken_one_not_at_all(client):
    corpus = Corpus.start(client)
    body = b"a whole message, sent slowly"
    if client.kind in webservers.KINDS:
        head = POST_HEAD % b"widgets" + b"Content-Length: %d\r\n\r\n" % len(body)
        answer = http_exchange(client, [head, *(bytes([b]) for b in body)], pause=2 / len(body), timeout=30)
        status, stored = status_of(answer), answer.partition(b"\r\n\r\n")[2]
    else:
        response = fastcgi_trickle(client, body, pause=2 / len(body))
        assert response is not None
        status, stored = response.status, response.body
    assert status == 201, stored[:300]
    assert b"<content>a whole message, sent slowly</content>" in stored
    last = client.get("/feed=widgets").entries()[-1]
    assert text_of(last) == body.decode()
    corpus.messages.append((text_of(last, "id"), body.decode()))
    if client.kind not in webservers.KINDS:
        fastcgi_trickle(client, b"half a mess", pause=0.01, announced=40)
        corpus.last = "a FastCGI connection broken mid-body"
    corpus.finish()
    assert "Traceback" not in client.log


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")  # it names the unknown method
def test_a_method_name_in_lower_case_is_not_post(client):
    """RFC 9110 9.1: method names are case-sensitive. A web server's <Limit POST> does not match
    "post", so a server that takes it for POST publishes past such a rule."""
    response = client.request("post", "/feed=widgets", entry("x").encode(), ATOM_XML, server_may_refuse=True)
    assert response.status in (405, 501), response.status
    assert client.get("/feed=widgets").status == 404


def test_feed_names_and_keys_differing_only_in_case_or_accents_stay_apart(client):
    for name in ("widgets", "Widgets", "w%C3%AFdgets"):
        assert client.post(f"/feed={name}", entry(name)).status == 201
    for name in ("widgets", "Widgets", "w%C3%AFdgets"):
        assert [text_of(e) for e in client.get(f"/feed={name}").entries()] == [name], name
    answers = [
        client.request("POST", "/feed=jobs", key.encode(), {**TEXT, "Idempotency-Key": key})
        for key in ("Backup-1", "backup-1")
    ]
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, None]
    assert [text_of(e) for e in client.get("/feed=jobs").entries()] == ["Backup-1", "backup-1"]
