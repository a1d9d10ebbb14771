"""Reading a feed: oldest first, resumable by message id, paged, cheap to poll."""

from urllib.parse import quote

import pytest
import sqlalchemy as sa

from conftest import ATOM_NS


def publish_many(client, feed: str, count: int) -> list[str]:
    return [
        client.publish(feed, f"message {i}").xml().findtext("a:id", namespaces=ATOM_NS) for i in range(count)
    ]


@pytest.mark.http
def test_feed_lists_messages_oldest_first_with_feed_metadata(client):
    ids = publish_many(client, "widgets", 3)
    response = client.get("/feed=widgets")
    assert response.status == 200
    assert response.headers["content-type"] == "application/atom+xml;type=feed"
    assert response.ids() == ids
    feed = response.xml()
    assert feed.findtext("a:title", namespaces=ATOM_NS) == "widgets"
    assert feed.findtext("a:id", namespaces=ATOM_NS).startswith("urn:uuid:")
    newest = response.entries()[-1].findtext("a:updated", namespaces=ATOM_NS)
    assert feed.findtext("a:updated", namespaces=ATOM_NS) == newest
    assert response.link("self") == "http://localhost/atommq/feed=widgets"
    assert response.link("next") is None


def test_feed_id_is_stable(client):
    client.publish("widgets", "a")
    first = client.get("/feed=widgets").xml().findtext("a:id", namespaces=ATOM_NS)
    client.publish("widgets", "b")
    assert client.get("/feed=widgets").xml().findtext("a:id", namespaces=ATOM_NS) == first


def test_start_after_returns_only_newer_messages(client):
    ids = publish_many(client, "widgets", 4)
    response = client.get(f"/feed=widgets?start_after={ids[1]}")
    assert response.ids() == ids[2:]
    assert response.link("self") == f"http://localhost/atommq/feed=widgets?start_after={ids[1]}"
    assert client.get(f"/feed=widgets?start_after={ids[-1]}").ids() == []


def test_start_at_includes_the_cursor_message(client):
    ids = publish_many(client, "widgets", 3)
    assert client.get(f"/feed=widgets?start_at={ids[1]}").ids() == ids[1:]


def test_cursor_may_be_the_bare_uuid(client):
    ids = publish_many(client, "widgets", 2)
    assert client.get(f"/feed=widgets?start_after={ids[0].removeprefix('urn:uuid:')}").ids() == ids[1:]


@pytest.mark.http
@pytest.mark.parametrize("empty", ["", "0"])
def test_empty_cursor_reads_from_the_first_message(client, empty):
    ids = publish_many(client, "widgets", 2)
    page = client.get(f"/feed=widgets?start_after={empty}")
    assert page.ids() == ids
    # rel="self" is the URL that was asked for (a validator checks it against the location),
    # and that page's own ETag makes a poll of it a 304.
    assert page.link("self") == f"http://localhost/atommq/feed=widgets?start_after={empty}"
    assert client.get(f"/feed=widgets?start_after={empty}", if_none_match=page.headers["etag"]).status == 304


@pytest.mark.http
@pytest.mark.parametrize("parameter", ["start_after", "start_at"])
def test_self_link_is_the_url_asked_for(client, parameter):
    ids = publish_many(client, "widgets", 2)
    for cursor in (ids[0], ids[0].removeprefix("urn:uuid:")):
        page = client.get(f"/feed=widgets?{parameter}={cursor}")
        assert page.link("self") == f"http://localhost/atommq/feed=widgets?{parameter}={cursor}"
    assert client.get("/feed=widgets").link("self") == "http://localhost/atommq/feed=widgets"


def test_paging_follows_next_links_through_the_whole_feed(make_client):
    client = make_client(page_size="3")
    ids = publish_many(client, "widgets", 7)
    seen, url, pages = [], "/feed=widgets", 0
    while url:
        page = client.get(url)
        assert page.status == 200
        assert len(page.ids()) <= 3
        seen += page.ids()
        url, pages = page.link("next"), pages + 1
    assert seen == ids
    assert pages == 3


def test_page_that_exactly_fills_has_no_next_link(make_client):
    client = make_client(page_size="2")
    publish_many(client, "widgets", 2)
    assert client.get("/feed=widgets").link("next") is None


def test_unknown_feed_is_404(client):
    response = client.get("/feed=nothing-here")
    assert response.status == 404
    assert "nothing-here" in response.text


def test_cursor_that_this_feed_never_had_is_400_naming_the_id(client):
    other = publish_many(client, "other", 1)[0]
    publish_many(client, "widgets", 1)
    for cursor in ("urn:uuid:00000000-0000-0000-0000-000000000000", other):
        response = client.get(f"/feed=widgets?start_after={quote(cursor)}")
        assert response.status == 400
        assert cursor in response.text


@pytest.mark.http
@pytest.mark.parametrize("query", ["start_after=a&start_at=b", "start_after=a&start_after=b", "startafter=x"])
def test_bad_query_parameters_are_400(client, query):
    publish_many(client, "widgets", 1)
    response = client.get(f"/feed=widgets?{query}")
    assert response.status == 400
    assert "start_after" in response.text


@pytest.mark.http
def test_polling_with_if_none_match_is_304_until_a_new_message(client):
    ids = publish_many(client, "widgets", 2)
    for url in ("/feed=widgets", f"/feed=widgets?start_after={ids[-1]}"):
        first = client.get(url)
        etag = first.headers["etag"]
        again = client.get(url, If_None_Match=etag)
        assert again.status == 304
        assert again.headers["etag"] == etag
        assert client.get(url, If_None_Match=f'"other", W/{etag}').status == 304
    etags = {
        url: client.get(url).headers["etag"]
        for url in ("/feed=widgets", f"/feed=widgets?start_after={ids[-1]}")
    }
    new = publish_many(client, "widgets", 1)
    for url, etag in etags.items():
        fresh = client.get(url, If_None_Match=etag)
        assert fresh.status == 200
        assert fresh.ids()[-1] == new[0]
        assert fresh.headers["etag"] != etag


@pytest.mark.http
def test_head_gives_the_headers_of_get_without_a_body(client):
    posted = client.publish("widgets", "x")
    for url in ("/", "/feed=widgets", posted.headers["location"]):
        got, head = client.get(url), client.request("HEAD", url)
        assert head.status == 200
        assert head.body == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        # Apache drops Content-Length from HEAD answers; when it is there, it must be GET's.
        assert head.headers.get("content-length", str(len(got.body))) == str(len(got.body))
        assert head.headers.get("etag") == got.headers.get("etag")


@pytest.mark.http
def test_service_document_lists_each_feed_as_a_collection(client):
    client.publish("widgets", "x")
    client.publish("gadgets", "y")
    response = client.get("/")
    assert response.status == 200
    assert response.headers["content-type"] == "application/atomsvc+xml"
    collections = response.xml().findall("app:workspace/app:collection", ATOM_NS)
    assert [c.get("href") for c in collections] == [
        "http://localhost/atommq/feed=gadgets",
        "http://localhost/atommq/feed=widgets",
    ]
    assert [c.findtext("a:title", namespaces=ATOM_NS) for c in collections] == ["gadgets", "widgets"]
    assert all(
        c.findtext("app:accept", namespaces=ATOM_NS) == "application/atom+xml;type=entry" for c in collections
    )


def test_service_document_of_an_empty_store_is_valid(client):
    assert client.get("/").status == 200


@pytest.mark.http
@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [
        ("DELETE", "/feed=widgets", "GET, HEAD, POST"),
        ("PUT", "/feed=widgets", "GET, HEAD, POST"),
        ("POST", "/", "GET, HEAD"),
        ("POST", "/feed=widgets/entry=00000000-0000-0000-0000-000000000000", "GET, HEAD"),
    ],
)
def test_other_methods_get_405_with_allow(client, method, url, allow):
    response = client.request(method, url, b"<entry><content>x</content></entry>")
    assert response.status == 405
    assert response.headers["allow"] == allow
    assert client.get("/feed=widgets").status == 404  # nothing was stored


@pytest.mark.http
def test_unknown_path_and_unknown_entry_are_404(client):
    client.publish("widgets", "x")
    assert client.get("/feeds/widgets").status == 404
    assert client.get("/feed=widgets/entry=00000000-0000-0000-0000-000000000000").status == 404


# Messages of every shape a page holds: namespaces undeclared in the message, xhtml, Base64
# with and without a summary, an author, characters that need escaping.
SHAPES = [
    "<entry><title>plain &amp; simple</title><content>caf\u00e9 &lt;b&gt; \u2603</content></entry>",
    "<entry><author><name>cron@db1</name></author><content type='html'>&lt;p&gt;hi</content></entry>",
    "<entry><title type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'><b>bold</b></div></title>"
    "<content type='xhtml'><div xmlns='http://www.w3.org/1999/xhtml'><p>x</p></div></content></entry>",
    "<entry><content type='application/vnd.x+xml'><order><line n='1'/></order></content></entry>",
    "<entry><content type='application/vnd.y+xml'><y:o xmlns:y='urn:y'>1</y:o></content></entry>",
    "<entry><content type='image/png'>iVBORw0KGgo=</content></entry>",
    "<entry><summary type='html'>&lt;i&gt;dump&lt;/i&gt;</summary><content type='application/gzip'>H4s=</content></entry>",
]
ENTRY_START = b'<entry xmlns="http://www.w3.org/2005/Atom" xmlns:app="http://www.w3.org/2007/app">'
DEFAULT_AUTHOR = b"<author><name>AtomMQ</name></author>"


def pages_and_entries(client, query: str = "") -> tuple[bytes, list[bytes]]:
    """The feed's page, and each message's own document, as bytes (`query`: format=json, say)."""
    ids = client.get("/feed=shapes").ids()
    asked = f"?{query}" if query else ""
    page = client.get(f"/feed=shapes{asked}")
    entries = [client.get(f"/feed=shapes/entry={i.removeprefix('urn:uuid:')}{asked}").body for i in ids]
    return page.body, entries


def test_a_message_has_the_same_bytes_in_a_page_and_on_its_own(client):
    """A consumer that hashes or compares a message finds it unchanged between the feed and its
    entry document: the entry is the page's <entry> with the namespaces declared (and an author
    named, as a standalone entry must)."""
    for entry in SHAPES:
        assert client.post("/feed=shapes", entry, "application/atom+xml").status == 201
    page, documents = pages_and_entries(client)
    for document in documents:
        head, _, rest = document.partition(b"\n")
        assert head == b"<?xml version='1.0' encoding='utf-8'?>"
        assert rest.startswith(ENTRY_START)
        inner = rest[len(ENTRY_START) :].removeprefix(DEFAULT_AUTHOR)
        assert b"<entry>" + inner in page
    assert documents[1].count(b"<author>") == 1  # the publisher's, not also AtomMQ's


def test_a_message_has_the_same_json_in_a_page_and_on_its_own(client):
    for entry in SHAPES:
        assert client.post("/feed=shapes", entry, "application/atom+xml").status == 201
    page, documents = pages_and_entries(client, "format=json")
    assert page.startswith(b'{"version":') and page.count(b"\n") == 1
    items = page.partition(b'"items":[')[2]
    for document in documents:
        assert document.endswith(b"}\n") and document.count(b"\n") == 1
        assert items.startswith(document[:-1] + b",") or items.startswith(document[:-1] + b"]")
        items = items[len(document) :]


def test_messages_stored_before_entries_were_kept_read_the_same(make_client):
    """A database from an AtomMQ that rendered every message on every read (in Atom; in JSON):
    its messages come out byte for byte as those stored with their <entry> and JSON item."""
    client = make_client()
    for entry in SHAPES:
        assert client.post("/feed=shapes", entry, "application/atom+xml").status == 201
    ids = client.get("/feed=shapes").ids()
    forms = ("", "&format=json")
    before = [pages_and_entries(client, query[1:]) for query in forms]
    pages_of_3 = [client.get(f"/feed=shapes?start_after={ids[2]}{query}").body for query in forms]
    engine = sa.create_engine(client.database_url)
    with engine.begin() as connection:  # some messages without, some with what is kept of them
        connection.execute(sa.text("UPDATE atommq_messages SET atom = NULL WHERE seq % 2 = 1"))
        connection.execute(sa.text("UPDATE atommq_messages SET json = NULL WHERE seq % 3 > 0"))
    engine.dispose()
    assert [pages_and_entries(client, query[1:]) for query in forms] == before
    assert [client.get(f"/feed=shapes?start_after={ids[2]}{query}").body for query in forms] == pages_of_3


@pytest.mark.http
def test_a_page_larger_than_a_fastcgi_record_arrives_whole(client):
    """A FastCGI answer is cut into records of at most 64 KiB; the web server joins them."""
    texts = [f"{i}:" + "x" * 50_000 for i in range(5)]
    ids = [client.publish("large", text).xml().findtext("a:id", namespaces=ATOM_NS) for text in texts]
    response = client.get("/feed=large")
    assert response.ids() == ids
    assert [e.findtext("a:content", namespaces=ATOM_NS) for e in response.entries()] == texts
    assert len(response.body) > 250_000


def test_a_missing_feed_and_a_missing_message_are_told_apart(client):
    """Each answer names what is missing: the feed, or a message of a feed that exists."""
    real = publish_many(client, "widgets", 1)[0]
    unknown = "urn:uuid:00000000-0000-0000-0000-000000000000"
    cases = [
        (f"/feed=gadgets?start_after={real}", 404, "feed 'gadgets' does not exist"),
        (f"/feed=widgets?start_after={unknown}", 400, f"feed 'widgets' has no message with id '{unknown}'"),
        (f"/feed=gadgets/entry={real.removeprefix('urn:uuid:')}", 404, "feed 'gadgets' does not exist"),
        ("/feed=widgets/entry=00000000-0000-0000-0000-000000000000", 404, "feed 'widgets' has no message"),
    ]
    for target, status, line in cases:
        response = client.get(target)
        assert (response.status, line in response.text) == (status, True), (target, response.text)


def test_last_n_is_the_feeds_newest_messages_oldest_first(make_client):
    """For a person's `tail`, a consumer that starts from now, and a page's "newest" link."""
    client = make_client(page_size="3")
    ids = publish_many(client, "widgets", 5)
    newest = client.get("/feed=widgets?last=2")
    assert newest.ids() == ids[3:] and newest.link("next") is None
    more = client.get("/feed=widgets?last=4")  # more than a page: its first 3, then the rest
    assert more.ids() == ids[1:4] and client.get(more.link("next")).ids() == ids[4:]
    assert client.get("/feed=widgets?last=50").ids() == ids[:3]
    for bad in ("last=0", "last=-1", "last=two", f"last=2&start_after={ids[0]}"):
        response = client.get(f"/feed=widgets?{bad}")
        assert response.status == 400 and "last" in response.text, bad
