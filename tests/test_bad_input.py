"""Bad input gets a clear 4xx, in well under a second, and nothing is stored."""

import time

import pytest

GOOD = "<entry><title>t</title><content>c</content></entry>"

BAD_ENTRIES = {
    "malformed": ("<entry><title>t</title><content>c</entry>", "not well-formed"),
    "empty": ("", "empty"),
    "not-an-entry": ('<feed xmlns="http://www.w3.org/2005/Atom"/>', "not an Atom <entry>"),
    "atom-0.3": (
        '<entry xmlns="http://purl.org/atom/ns#"><title>t</title><content mode="xml">x</content></entry>',
        "DefaultVersion = '1.0'",
    ),
    "no-content": ("<entry><title>t</title></entry>", "no <content>"),
    "two-contents": ("<entry><content>a</content><content>b</content></entry>", "2 <content>"),
    "markup-in-text": ("<entry><content>a <b>bold</b></content></entry>", "must not contain elements"),
    "bad-xhtml": ('<entry><content type="xhtml"><p>no div</p></content></entry>', "exactly one"),
    "bad-title-type": ('<entry><title type="markdown">x</title><content>c</content></entry>', "not allowed"),
    "bad-content-type": ('<entry><content type="markdown">x</content></entry>', "not allowed"),
    "content-src": ('<entry><content src="http://example.org/x"/></entry>', "src"),
    "undefined-entity": ("<entry><content>&nbsp;</content></entry>", "not well-formed"),
    "xxe-file": (
        '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<entry><content>&x;</content></entry>",
        "DOCTYPE",
    ),
    "billion-laughs": (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 or "")) * 10}">' for i in range(1, 10))
        + "]><entry><content>&lol9;</content></entry>",
        "DOCTYPE",
    ),
    "deep-nesting": (
        '<entry><content type="application/x+xml">'
        + "<a>" * 100_000
        + "</a>" * 100_000
        + "</content></entry>",
        "not well-formed",
    ),
}


def assert_nothing_stored(client, feed="widgets"):
    response = client.get(f"/feed={feed}")
    assert response.status == 404, "a refused message created the feed"


@pytest.mark.parametrize("name", list(BAD_ENTRIES))
def test_bad_entry_is_400_with_a_reason_and_nothing_is_stored(client, name):
    body, reason = BAD_ENTRIES[name]
    started = time.monotonic()
    response = client.post("/feed=widgets", body, "application/atom+xml")
    assert time.monotonic() - started < 5  # CGI start-up included; the parse itself is instant
    assert response.status == 400
    assert reason in response.text
    assert "root:" not in response.text  # no file contents leaked
    assert_nothing_stored(client)


def test_bad_message_does_not_disturb_an_existing_feed(client):
    client.publish("widgets", "good")
    before = client.get("/feed=widgets")
    assert client.post("/feed=widgets", "<entry><content>bad</entry>").status == 400
    after = client.get("/feed=widgets")
    assert after.ids() == before.ids()
    assert after.headers["etag"] == before.headers["etag"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/atom+xml"])
def test_body_that_is_not_utf8_is_400(client, content_type):
    body = (
        "<entry><content>caf\xe9</content></entry>".encode("latin-1") if "xml" in content_type else b"caf\xe9"
    )
    response = client.post("/feed=widgets", body, content_type)
    assert response.status == 400
    assert "UTF-8" in response.text
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "-dash", "a/b", "a b", "x" * 101, "semi;colon", "a&b", "quote'd", "new%0Aline"],
)
def test_feed_name_outside_the_rule_is_400(client, name):
    response = client.post(f"/feed={name}", GOOD, server_may_refuse=True)
    assert response.status in (400, 404)  # "a/b" is another path shape altogether
    assert client.get("/").text.count("<collection") == 0


def test_feed_name_rule_allows_letters_digits_dot_dash_underscore(client):
    for name in ("a", "x" * 100, "alerts.disk-full_2", "_private", "Ünïcödé"):
        assert client.post(f"/feed={name}", GOOD).status == 201, name


def test_body_over_the_limit_is_413_and_nothing_is_stored(make_client):
    client = make_client(max_body_bytes="1000")
    filler = "x" * (1000 - len(GOOD))
    just_under = GOOD.replace("<content>c", f"<content>c{filler}")
    assert len(just_under) == 1000
    assert client.post("/feed=fits", just_under).status == 201
    response = client.post("/feed=widgets", just_under + " ")
    assert response.status == 413
    assert "1000" in response.text
    assert_nothing_stored(client)


def test_body_over_the_limit_without_content_length_is_413(make_client):
    client = make_client(max_body_bytes="1000")
    response = client.request(
        "POST", "/feed=widgets", b"x" * 5000, {"Content-Type": "text/plain"}, send_length=False
    )
    assert response.status == 413
    assert_nothing_stored(client)


def test_path_that_is_not_utf8_is_400(client):
    response = client.post("/feed=caf%E9", GOOD, server_may_refuse=True)
    if response.headers["content-type"].startswith("text/plain"):  # AtomMQ's own answer
        assert response.status == 400
        assert "UTF-8" in response.text
    else:  # lighttpd refuses such a URL itself
        assert response.status in (400, 404)
    assert client.get("/").text.count("<collection") == 0


@pytest.mark.parametrize("text", ["bell \x07 in text", "nul \x00", "noncharacter \uffff"])
def test_text_with_characters_xml_cannot_carry_is_400(client, text):
    response = client.post("/feed=widgets", text.encode("utf-8"), "text/plain")
    assert response.status == 400
    assert "XML cannot carry" in response.text
    assert_nothing_stored(client)


def test_content_type_that_is_not_a_media_type_is_400(client):
    response = client.post("/feed=widgets", b"x", "nonsense")
    assert response.status == 400
    assert "not a media type" in response.text
    assert_nothing_stored(client)
