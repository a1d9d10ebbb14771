"""Publishing: what a publisher sends comes back exactly, with the answer AtomPub clients expect."""

import base64
import re

import pytest
import sqlalchemy as sa
from lxml import etree

from conftest import ATOM_NS, PREFIX

ATOM = "http://www.w3.org/2005/Atom"
SEED_EXAMPLE = "<entry><title>allo</title><content>an important message</content></entry>"


def inner(element) -> str:
    """An element's content as XML text, for comparing what was sent with what came back."""
    # Exclusive C14N: namespace declarations inherited from the feed do not count.
    children = (etree.tostring(c, method="c14n", exclusive=True).decode() for c in element)
    return (element.text or "") + "".join(children)


@pytest.mark.http
def test_seed_curl_example_is_created_with_location_etag_and_entry(client):
    response = client.post("/feed=widgets", SEED_EXAMPLE)  # curl -d: form-encoded, no namespace
    assert response.status == 201
    assert response.headers["content-type"] == "application/atom+xml;type=entry"
    location = response.headers["location"]
    assert re.fullmatch(r"http://localhost/atommq/feed=widgets/entry=[0-9a-f-]{36}", location)
    entry = response.xml()
    message_id = entry.findtext("a:id", namespaces=ATOM_NS)
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", message_id)
    assert location.endswith(message_id.removeprefix("urn:uuid:"))
    assert response.headers["etag"] == f'"{message_id.removeprefix("urn:uuid:")}"'
    assert entry.findtext("a:title", namespaces=ATOM_NS) == "allo"
    assert entry.findtext("a:content", namespaces=ATOM_NS) == "an important message"
    assert entry.find("a:content", ATOM_NS).get("type") is None
    assert entry.findtext("a:updated", namespaces=ATOM_NS) == entry.findtext(
        "a:published", namespaces=ATOM_NS
    )


@pytest.mark.http
def test_location_serves_the_stored_entry_and_its_etag(client):
    posted = client.post("/feed=widgets", SEED_EXAMPLE)
    fetched = client.get(posted.headers["location"])
    assert fetched.status == 200
    assert fetched.body == posted.body
    assert fetched.headers["etag"] == posted.headers["etag"]
    assert client.get(posted.headers["location"], If_None_Match=posted.headers["etag"]).status == 304


@pytest.mark.parametrize(
    ("title", "content"),
    [
        ("<title>plain</title>", "<content>an important message</content>"),
        ('<title type="text">typed</title>', '<content type="text">  spaced\n  lines  </content>'),
        (
            '<title type="html">&lt;b&gt;bold&lt;/b&gt;</title>',
            '<content type="html">&lt;p&gt;a &amp;amp; b&lt;/p&gt;</content>',
        ),
        (
            '<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">x <b>y</b></div></title>',
            '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p class="c">Hi &amp; <i>bye</i></p></div></content>',
        ),
        (
            "<title>xml</title>",
            '<content type="application/vnd.widget+xml"><w:order xmlns:w="urn:w" w:n="1">3 <w:x/></w:order></content>',
        ),
        ("<title>csv</title>", '<content type="text/csv">a,b\n1,2\n</content>'),
        (
            "<title>binary</title>",
            f'<content type="application/octet-stream">{base64.b64encode(bytes(range(256))).decode()}</content>',
        ),
        ("<title>Grüße, 世界</title>", "<content>naïve café ☕ 𝄞</content>"),
        ("", "<content>no title at all</content>"),
    ],
    ids=[
        "text",
        "typed-text",
        "html",
        "xhtml",
        "xml-media",
        "text-media",
        "base64-media",
        "non-ascii",
        "no-title",
    ],
)
@pytest.mark.parametrize("namespaced", [False, True], ids=["bare", "atom-ns"])
def test_message_comes_back_exactly_as_sent(client, title, content, namespaced):
    xmlns = f' xmlns="{ATOM}"' if namespaced else ""
    sent = etree.fromstring(f"<entry{xmlns}>{title}{content}</entry>")
    prefix = "a:" if namespaced else ""
    ns = ATOM_NS if namespaced else None
    response = client.post("/feed=exact", etree.tostring(sent), "application/atom+xml;type=entry")
    assert response.status == 201, response.text
    for got in (response.xml(), client.get("/feed=exact").entries()[0]):
        for name in ("title", "content"):
            expected = sent.find(prefix + name, ns)
            returned = got.find("a:" + name, ATOM_NS)
            if expected is None:
                assert returned.text is None and returned.get("type") is None
                continue
            assert returned.get("type") == expected.get("type")
            assert inner(returned) == inner(expected)


def test_author_is_kept(client):
    entry = "<entry><author><name>cron@db1</name></author><title>t</title><content>c</content></entry>"
    client.post("/feed=widgets", entry)
    got = client.get("/feed=widgets").entries()[0]
    assert got.findtext("a:author/a:name", namespaces=ATOM_NS) == "cron@db1"


@pytest.mark.http
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"]
)
def test_plain_text_body_is_a_text_message(client, content_type):
    text = "disk /var is 91% full; héllo"
    response = client.post("/feed=alerts", text, content_type)
    assert response.status == 201
    entry = client.get("/feed=alerts").entries()[0]
    assert entry.findtext("a:content", namespaces=ATOM_NS) == text
    assert entry.find("a:content", ATOM_NS).get("type") is None


@pytest.mark.http
def test_body_of_another_media_type_is_stored_with_that_type(client):
    body = b'{"order": 17, "items": ["\xc3\xa9"]}'
    assert client.post("/feed=orders", body, "application/json").status == 201
    content = client.get("/feed=orders").entries()[0].find("a:content", ATOM_NS)
    assert content.get("type") == "application/json"
    assert base64.b64decode(content.text) == body  # RFC 4287 4.1.3.3: Base64 for such types


def test_form_fields_in_the_body_never_move_a_message_to_another_feed(client):
    text = "<entry><title>x</title><content>a&amp;feed=other&amp;feed_title=other&amp;</content></entry>"
    assert client.post("/feed=mine", text).status == 201
    assert client.post("/feed=mine", "a&feed=other&feed_title=other&").status == 201
    assert len(client.get("/feed=mine").entries()) == 2
    assert client.get("/feed=other").status == 404


@pytest.mark.http
def test_non_ascii_feed_name_is_percent_encoded_in_links(client):
    response = client.publish("café-λ", "x")
    assert response.headers["location"].startswith("http://localhost/atommq/feed=caf%C3%A9-%CE%BB/entry=")
    feed = client.get("/feed=caf%C3%A9-%CE%BB")
    assert feed.status == 200
    assert feed.xml().findtext("a:title", namespaces=ATOM_NS) == "café-λ"
    assert feed.link("self") == "http://localhost/atommq/feed=caf%C3%A9-%CE%BB"


@pytest.mark.http
def test_body_without_content_length_is_read_to_the_end(client):
    """Apache's CGI sends chunked uploads with no CONTENT_LENGTH: the message must arrive whole."""
    text = "x" * 100_000
    response = client.request(
        "POST",
        "/feed=chunked",
        f"<entry><content>{text}</content></entry>".encode(),
        {"Content-Type": "application/atom+xml"},
        send_length=False,
    )
    assert response.status == 201
    assert client.get("/feed=chunked").entries()[0].findtext("a:content", namespaces=ATOM_NS) == text


@pytest.mark.http
def test_links_use_the_mount_prefix_once(client):
    response = client.publish("widgets", "x")
    assert response.headers["location"].count(PREFIX) == 1
    assert client.get("/feed=widgets").link("self") == "http://localhost/atommq/feed=widgets"


def test_base_url_setting_replaces_the_host_and_prefix_in_links(make_client):
    client = make_client(base_url="https://example.org/mq/")
    response = client.publish("widgets", "x")
    assert response.headers["location"].startswith("https://example.org/mq/feed=widgets/entry=")
    assert client.get("/feed=widgets").link("self") == "https://example.org/mq/feed=widgets"


APP = "{http://www.w3.org/2007/app}"
XHTML_DIV = '<div xmlns="http://www.w3.org/1999/xhtml">a <b>bold</b> summary</div>'


@pytest.mark.parametrize(
    "summary",
    ["<summary>plain &amp; simple</summary>", '<summary type="html">&lt;b&gt;x&lt;/b&gt;</summary>']
    + [f'<summary type="xhtml">{XHTML_DIV}</summary>', "<summary></summary>"],
    ids=["text", "html", "xhtml", "empty"],
)
def test_the_publishers_summary_comes_back_exactly_as_sent(client, summary):
    body = f'<entry xmlns="{ATOM}"><content type="application/json">e30=</content>{summary}</entry>'
    response = client.post("/feed=widgets", body, "application/atom+xml")
    assert response.status == 201, response.text
    sent = etree.fromstring(body).find(f"{{{ATOM}}}summary")
    for got in (
        response.xml(),
        client.get(response.headers["location"]).xml(),
        client.get("/feed=widgets").entries()[0],
    ):
        returned = got.findall("a:summary", ATOM_NS)
        assert len(returned) == 1
        assert (returned[0].get("type"), inner(returned[0])) == (sent.get("type"), inner(sent))


def test_base64_content_without_a_summary_gets_one_naming_its_type_and_size(client):
    """RFC 4287 4.1.1.1: an entry whose content is Base64 MUST have a summary."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    assert client.post("/feed=files", png, "image/png").status == 201
    entry = "<entry><content type='application/json'>eyJhIjogMX0=</content></entry>"  # {"a": 1}
    assert client.post("/feed=files", entry, "application/atom+xml").status == 201
    summaries = [e.findtext("a:summary", namespaces=ATOM_NS) for e in client.get("/feed=files").entries()]
    assert summaries == ["image/png, 1032 bytes", "application/json, 8 bytes"]


@pytest.mark.parametrize(
    "content",
    [
        "<content>x</content>",
        "<content type='html'>&lt;b&gt;</content>",
        "<content type='text/csv'>a,b</content>",
    ]
    + ["<content type='application/vnd.x+xml'><x/></content>"],
    ids=["text", "html", "text-media-type", "xml"],
)
def test_content_a_reader_can_show_gets_no_summary_of_ours(client, content):
    assert client.post("/feed=widgets", f"<entry>{content}</entry>").status == 201
    assert client.get("/feed=widgets").entries()[0].find("a:summary", ATOM_NS) is None


def test_entries_carry_app_edited_equal_to_updated(client):
    """RFC 5023 10.2: a message is never edited, so it was last edited when it was stored."""
    response = client.publish("widgets", "x")
    for entry in (
        response.xml(),
        client.get(response.headers["location"]).xml(),
        client.get("/feed=widgets").entries()[0],
    ):
        edited = entry.findall(f"{APP}edited")
        assert len(edited) == 1
        assert edited[0].text == entry.findtext("a:updated", namespaces=ATOM_NS)


def test_a_database_from_before_summaries_and_stored_entries_is_brought_up_to_date(make_client):
    old = make_client()
    assert old.post("/feed=files", b"\x00\x01\x02", "application/octet-stream").status == 201
    url = old.database_url  # the database as an earlier AtomMQ left it: no summary columns
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for column in ("summary", "summary_type", "atom"):
            connection.execute(sa.text(f"ALTER TABLE atommq_messages DROP COLUMN {column}"))
    engine.dispose()
    new = make_client(database_url=url)
    entries = new.get("/feed=files").entries()
    assert [e.findtext("a:summary", namespaces=ATOM_NS) for e in entries] == [
        "application/octet-stream, 3 bytes"
    ]
    entry = (
        "<entry><summary>the nightly dump</summary><content type='application/gzip'>H4s=</content></entry>"
    )
    assert new.post("/feed=files", entry).status == 201
    assert new.get("/feed=files").entries()[1].findtext("a:summary", namespaces=ATOM_NS) == "the nightly dump"


def test_a_body_of_its_own_media_type_is_that_message_whatever_its_first_byte(client):
    """Only a body sent as XML, or with a type that says nothing better (none, text/plain,
    form-encoded, application/octet-stream), is read as an Atom entry when it starts with "<"."""
    png = b"<not an entry>\x00\xff\x89PNG"
    made = client.request("POST", "/feed=files", png, {"Content-Type": "image/png"})
    assert made.status == 201, made.text
    assert client.get(made.headers["location"] + "?format=raw").body == png
    page = client.request("POST", "/feed=files", b"<p>hello</p>", {"Content-Type": "text/html"})
    assert page.status == 201, page.text
    content = page.xml().find("{http://www.w3.org/2005/Atom}content")
    assert (content.get("type"), content.text) == ("text/html", "<p>hello</p>")
    guessed = client.request(
        "POST",
        "/feed=files",
        b"<entry><content>x</content></entry>",
        {"Content-Type": "application/octet-stream"},
    )
    assert guessed.xml().find("{http://www.w3.org/2005/Atom}content").text == "x"
