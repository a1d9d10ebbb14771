"""Pages for a person with a browser: what a browser asks for gets HTML (and every other client
what it got before); nothing a message holds is markup on a page; the publish form stores a
message as a publisher's POST would, and only when AtomMQ's own page sent it. Each HTML answer
is also checked by conformance.check_page (no inline script, no handler attributes, labels).
What only a real browser shows (scripts running or not) is tests/test_browser.py's."""

import base64
import re
from urllib.parse import urlencode

import lxml.html
import pytest
import sqlalchemy as sa
from test_access import login, with_rules
from test_consumers import put
from test_retention import publish_many

from conftest import ATOM_NS

CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
HOSTILE = '</title><script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'


def page(client, target: str, **headers: str):
    response = client.get(target, Accept=CHROME, **headers)
    assert response.status == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response, lxml.html.document_fromstring(response.body)


def form(client, feed: str, key: str = "k1", **fields: str):
    body = urlencode({"key": key, "kind": "text", **fields}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **fields.pop("headers", {})}
    return client.request("POST", f"/feed={feed}/form", body, headers)


@pytest.mark.http
def test_a_browser_gets_pages_with_their_safety_headers_and_every_other_client_what_it_got(client):
    message = client.publish("jobs", "hello").xml().findtext("a:id", namespaces=ATOM_NS)
    for target in ("/", "/feed=jobs", f"/feed=jobs/entry={message}"):
        response, _ = page(client, target)
        policy = response.headers["content-security-policy"]
        assert (
            "default-src 'none'" in policy
            and "script-src 'self'" in policy
            and "'unsafe-inline'" not in policy
        )
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["vary"] == "Accept" and "private" in response.headers["cache-control"]
        assert client.get(target + "?format=html").headers["content-type"].startswith("text/html")
        for accept in ("*/*", "application/atom+xml, text/html;q=0.5", ""):
            other = client.get(target, Accept=accept) if accept else client.get(target)
            assert other.headers["content-type"].startswith("application/atom"), (target, accept)


def test_a_feed_page_shows_the_messages_oldest_first_and_links_the_feeds_for_readers(client):
    ids = publish_many(client, "jobs", 3)
    _, document = page(client, "/feed=jobs")
    articles = document.findall(".//article")
    assert [a.get("id") for a in articles] == [f"m-{i[9:]}" for i in ids]
    assert [a.findtext(".//pre") for a in articles] == ["m0", "m1", "m2"]
    base = document.find(".//base").get("href")
    assert base == "http://localhost/atommq/feed=jobs/"
    assert articles[0].find(".//h2/a").get("href") == f"entry={ids[0][9:]}"  # relative to the base
    alternates = {
        link.get("type"): link.get("href") for link in document.findall(".//link[@rel='alternate']")
    }
    assert alternates == {
        "application/atom+xml": "http://localhost/atommq/feed=jobs?format=atom",
        "application/feed+json": "http://localhost/atommq/feed=jobs?format=json",
    }
    assert client.get(alternates["application/atom+xml"]).ids() == ids
    main = document.find(".//main")
    assert main.get("data-follow") == "yes" and main.get("data-feed") == "http://localhost/atommq/feed=jobs"
    assert document.find(".//span[@class='reload']/a").get("href") == "http://localhost/atommq/feed=jobs"


def test_a_feed_page_holds_a_hundred_messages_and_links_the_next_and_the_newest(client):
    ids = publish_many(client, "jobs", 102)
    _, first = page(client, "/feed=jobs")
    assert len(first.findall(".//article")) == 100 and first.find(".//main").get("data-follow") is None
    following = first.find(".//a[@rel='next']").get("href")
    assert following == f"http://localhost/atommq/feed=jobs?start_after={ids[99]}"
    _, second = page(client, following)
    assert [a.get("id")[2:] for a in second.findall(".//article")] == [i[9:] for i in ids[100:]]
    assert second.find(".//main").get("data-follow") == "yes"
    _, newest = page(client, "/feed=jobs?last=100")
    assert (
        len(newest.findall(".//article")) == 100
        and newest.findall(".//article")[-1].get("id")[2:] == ids[-1][9:]
    )


def test_nothing_a_message_holds_is_markup_on_any_page(client):
    entry = (
        f"<entry><title>{HOSTILE.replace('<', '&lt;')}</title><author><name>{HOSTILE.replace('<', '&lt;')}</name></author>"
        f'<content type="html">{HOSTILE.replace("&", "&amp;").replace("<", "&lt;")}</content></entry>'
    )
    made = client.post("/feed=jobs", entry, "application/atom+xml")
    assert made.status == 201, made.text
    message = made.xml().findtext("a:id", namespaces=ATOM_NS)
    assert client.post("/feed=jobs", "x" + HOSTILE, "text/plain").status == 201
    for target in ("/", "/feed=jobs", f"/feed=jobs/entry={message}"):
        response, document = page(client, target)
        assert b"<script>alert" not in response.body and b"<img src=x" not in response.body
        assert not document.findall(".//img") and len(document.findall(".//script")) == 1
    _, document = page(client, "/feed=jobs")
    assert document.findall(".//article")[0].findtext(".//h2/a") == HOSTILE  # shown as text, whole
    assert document.findall(".//article")[1].findtext(".//pre") == "x" + HOSTILE
    _, alone = page(client, f"/feed=jobs/entry={message}")
    frame = alone.find(".//iframe")
    assert frame.get("sandbox") == "" and frame.get("src").endswith("?format=rendered")
    rendered = client.get(frame.get("src"))
    # What could run or reach out is not even there; the rest is the message's markup.
    assert rendered.text == '<!DOCTYPE html>\n<meta charset="utf-8">\n<div><img src="x"><a>x</a></div>\n'
    assert rendered.headers["content-security-policy"].startswith("sandbox; default-src 'none'")


def test_messages_stored_before_pages_are_shown_the_same(client):
    ids = publish_many(client, "jobs", 3)
    _, before = page(client, "/feed=jobs")
    engine = sa.create_engine(client.database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE atommq_messages SET html = NULL WHERE uuid = :u"), {"u": ids[1][9:]}
        )
    engine.dispose()
    response, after = page(client, "/feed=jobs")
    shown = [lxml.html.tostring(d.find(".//div[@class='messages']")) for d in (before, after)]
    assert shown[0] == shown[1]


def test_binary_messages_show_their_type_and_size_and_download_as_published(client):
    data = bytes(range(256)) * 4
    made = client.request("POST", "/feed=files", data, {"Content-Type": "image/png"})
    message = made.xml().findtext("a:id", namespaces=ATOM_NS)
    _, document = page(client, "/feed=files")
    shown = document.find(".//p[@class='content binary']")
    assert shown.text_content().startswith("image/png, 1,024 bytes")
    download = client.get(shown.find("a").get("href").replace("entry=", "/feed=files/entry="))
    assert download.body == data and download.headers["content-type"] == "image/png"
    assert download.headers["content-disposition"] == f'attachment; filename="{message[9:]}"'
    assert download.headers["content-security-policy"].startswith("sandbox")
    text = client.publish("files", "plain").xml().findtext("a:id", namespaces=ATOM_NS)
    assert client.get(f"/feed=files/entry={text}?format=raw").body == b"plain"
    assert client.get(f"/feed=files/entry={text}?format=rendered").status == 404
    assert client.get("/feed=files?format=raw").status == 400
    # JSON, the usual payload of a bus, is shown as its text, and downloads as published.
    sent = b'{"host": "db1", "disk": "91%"}'
    made = client.request("POST", "/feed=files", sent, {"Content-Type": "application/json"})
    _, document = page(client, "/feed=files")
    assert document.findall(".//article")[-1].findtext(".//pre") == sent.decode()
    assert client.get(made.headers["location"] + "?format=raw").body == sent
    # JSON bytes that are no text (a NUL, which PostgreSQL's text cannot even hold): binary.
    odd = client.request("POST", "/feed=files", b"\x00", {"Content-Type": "application/json"})
    assert odd.status == 201, odd.text
    _, document = page(client, "/feed=files")
    assert document.findall(".//article")[-1].find(".//p[@class='content binary']") is not None


def test_the_service_page_lists_the_feeds_and_their_consumers_lag(client):
    ids = publish_many(client, "jobs", 3)
    publish_many(client, "alerts.disk", 1)
    put(client, "jobs", "mailer", ids[0])
    _, document = page(client, "/")
    rows = document.findall(".//tbody/tr")
    assert [row.find(".//a").text for row in rows] == ["alerts.disk", "jobs"]
    assert rows[1].find(".//a").get("href") == "http://localhost/atommq/feed=jobs"
    assert rows[1].findtext(".//li").startswith("mailer: 2 behind, the oldest unread")
    assert [row.findtext(".//td[@class='count']") for row in rows] == ["1", "3"]


def test_the_form_publishes_a_message_once_and_sends_the_browser_to_it(client):
    sent = form(client, "jobs", title="Deploy", content="line 1\r\nline 2")
    assert sent.status == 303, sent.text
    location = sent.headers["location"]
    assert re.fullmatch(r"http://localhost/atommq/feed=jobs\?last=100#m-[0-9a-f-]{36}", location), location
    again = form(client, "jobs", title="Deploy", content="line 1\r\nline 2")  # a double click
    assert again.headers["location"] == location
    form(client, "jobs", content="another")  # the same form, another message: stored
    entries = client.get("/feed=jobs").entries()
    assert [e.findtext("a:content", namespaces=ATOM_NS) for e in entries] == ["line 1\nline 2", "another"]
    assert entries[0].findtext("a:title", namespaces=ATOM_NS) == "Deploy"
    atom = form(
        client, "jobs", key="k2", kind="atom", content="<entry><title>T</title><content>c</content></entry>"
    )
    assert (
        atom.status == 303
        and client.get("/feed=jobs").entries()[-1].findtext("a:title", namespaces=ATOM_NS) == "T"
    )
    for fields, says in (
        ({"content": " "}, "the message is empty"),
        ({"content": "x", "key": ""}, "not valid"),
    ):
        refused = form(client, "jobs", **fields)
        assert refused.status == 400 and says in refused.text


@pytest.mark.http
def test_a_change_sent_by_another_sites_page_is_refused_and_nothing_is_stored(client):
    client.publish("jobs", "first")
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
    ):
        posted = client.request("POST", "/feed=jobs", b"forged", {"Content-Type": "text/plain", **headers})
        assert posted.status == 403 and "another site" in posted.text, (headers, posted.text)
        by_form = form(client, "jobs", content="forged", headers=headers)
        assert by_form.status == 403
        deleted = client.request("DELETE", "/feed=jobs/consumer=x", headers=headers)
        assert deleted.status == 403
    assert [e.findtext("a:content", namespaces=ATOM_NS) for e in client.get("/feed=jobs").entries()] == [
        "first"
    ]
    # AtomMQ's own page, and programs that say nothing of where they come from: stored.
    own = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert form(client, "jobs", content="mine", headers=own).status == 303
    assert client.request("POST", "/feed=jobs", b"curl", {"Content-Type": "text/plain"}).status == 201


def test_the_form_is_offered_to_who_may_publish_and_a_login_link_to_who_might(make_client, tmp_path):
    feed = with_rules(make_client, tmp_path, "[publish]\n* = cron\n[read]\n* = @anyone\n")
    feed.request("POST", "/feed=jobs", b"x", {"Content-Type": "text/plain", **login("cron")})
    _, anonymous = page(feed, "/feed=jobs")
    assert anonymous.find(".//form") is None
    # The login link is at AtomMQ's top (/login), so that the browser's login then covers every
    # page under it (RFC 7617 2.2), the feed's too; it leads back to the feed.
    assert anonymous.find(".//p[@class='login']/a").get("href") == "http://localhost/atommq/login?feed=jobs"
    asked = feed.get("/login?feed=jobs", Accept=CHROME)
    assert asked.status == 401 and asked.headers["www-authenticate"].startswith("Basic")
    back = feed.get("/login?feed=jobs", Accept=CHROME, **login("alice"))
    assert back.status == 303 and back.headers["location"] == "http://localhost/atommq/feed=jobs"
    assert feed.get("/feed=jobs/form", Accept=CHROME).status == 401
    _, reader = page(feed, "/feed=jobs", **login("alice"))
    assert reader.find(".//form") is None and reader.find(".//p[@class='login']") is None
    _, publisher = page(feed, "/feed=jobs", **login("cron"))
    assert publisher.find(".//form").get("action") == "http://localhost/atommq/feed=jobs/form"
    _, alone = page(feed, "/feed=jobs/form", **login("cron"))
    assert alone.find(".//form//textarea").get("name") == "content"
    assert form(feed, "jobs", content="y").status == 401
    assert form(feed, "jobs", content="y", headers=login("alice")).status == 403
    assert form(feed, "jobs", content="y", headers=login("cron")).status == 303


def test_a_feed_before_its_first_message_is_a_page_with_the_form_that_makes_it(make_client, tmp_path):
    rules = "[publish]\n* = cron\n[read]\n* = @anyone\n[admin]\n* = cron\n"
    feed = with_rules(make_client, tmp_path, rules)
    missing = feed.get("/feed=new", Accept=CHROME, **login("cron"))
    assert missing.status == 404 and missing.headers["content-type"] == "text/html; charset=utf-8"
    assert "frame-ancestors 'none'" in missing.headers["content-security-policy"]
    document = lxml.html.document_fromstring(missing.body)
    line = "feed 'new' does not exist; it is created by its first message"
    assert document.findtext(".//main/p") == line and document.findtext(".//h1") == "new"
    assert document.find(".//form").get("action") == "http://localhost/atommq/feed=new/form"
    assert form(feed, "new", content="first", headers=login("cron")).status == 303
    _, made = page(feed, "/feed=new", **login("cron"))
    assert [p.text for p in made.findall(".//article/pre")] == ["first"]
    # Who may not publish is told how to log in; every other client still gets the one line.
    anonymous = lxml.html.document_fromstring(feed.get("/feed=other", Accept=CHROME).body)
    assert anonymous.find(".//form") is None and anonymous.find(".//p[@class='login']/a") is not None
    plain = feed.get("/feed=other")
    assert plain.status == 404 and plain.text == line.replace("new", "other") + "\n"
    # A deleted feed: its page says so, and the form makes it anew.
    assert feed.request("DELETE", "/feed=new", headers=login("cron")).status == 200
    gone = feed.get("/feed=new", Accept=CHROME, **login("cron"))
    document = lxml.html.document_fromstring(gone.body)
    assert gone.status == 404 and "was deleted on" in document.findtext(".//main/p")
    assert document.find(".//form").get("action") == "http://localhost/atommq/feed=new/form"


@pytest.mark.http
def test_the_pages_style_sheet_and_script_are_served_and_cached_at_their_version(client):
    _, document = page(client, "/")
    for url in (
        document.find(".//link[@rel='stylesheet']").get("href"),
        document.find(".//script").get("src"),
    ):
        assert re.fullmatch(r"http://localhost/atommq/static/[0-9a-f]{12}/atommq\.(css|js)", url), url
        served = client.get(url)
        assert (
            served.status == 200 and served.headers["cache-control"] == "public, max-age=31536000, immutable"
        )
        assert served.headers["content-type"].startswith(("text/css", "text/javascript"))
        stale = client.get(re.sub(r"/static/[0-9a-f]+/", "/static/0000/", url))
        assert stale.body == served.body and stale.headers["cache-control"] == "no-cache"
    assert client.get("/static/0000/secret.py").status == 404


def test_base64_helper_matches_what_the_page_says(client):
    """The size shown for a binary message is the size of what was published."""
    data = b"\x00\xff" * 1000 + b"!"
    client.request("POST", "/feed=files", data, {"Content-Type": "application/octet-stream"})
    _, document = page(client, "/feed=files")
    assert f"{len(data):,} bytes" in document.find(".//p[@class='content binary']").text_content()
    assert base64.b64encode(data)  # published as it is: the download test checks the bytes
