"""Bad input gets a clear 4xx, in well under a second, and nothing is stored. Hostile input
(entities, bombs, broken encodings, control characters, ...) is test_hostile.py's."""

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
}


def assert_nothing_stored(client, feed="widgets"):
    response = client.get(f"/feed={feed}")
    assert response.status == 404, "a refused message created the feed"


@pytest.mark.parametrize("name", list(BAD_ENTRIES))
def test_bad_entry_is_400_with_a_reason_and_nothing_is_stored(client, name):
    body, reason = BAD_ENTRIES[name]
    started = time.monotonic()
    response = client.post("/feed=widgets", body, "application/atom+xml")
    # No entity expansion or backtracking blow-up: those take minutes or hours, not seconds.
    assert time.monotonic() - started < 30
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


@pytest.mark.http
@pytest.mark.parametrize(
    "name",
    ["", ".hidden", "-dash", "a/b", "a b", "x" * 101, "semi;colon", "a&b", "quote'd", "new%0Aline"],
)
def test_feed_name_outside_the_rule_is_400(client, name):
    response = client.post(f"/feed={name}", GOOD, server_may_refuse=True)
    assert response.status in (400, 404)  # "a/b" is another path shape altogether
    assert client.get("/").text.count("<collection") == 0


@pytest.mark.http
def test_feed_name_rule_allows_letters_digits_dot_dash_underscore(client):
    for name in ("a", "x" * 100, "alerts.disk-full_2", "_private", "Ünïcödé"):
        assert client.post(f"/feed={name}", GOOD).status == 201, name


@pytest.mark.http
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


@pytest.mark.http
def test_body_over_the_limit_without_content_length_is_413(make_client):
    client = make_client(max_body_bytes="1000")
    response = client.request(
        "POST", "/feed=widgets", b"x" * 5000, {"Content-Type": "text/plain"}, send_length=False
    )
    assert response.status == 413
    assert_nothing_stored(client)


@pytest.mark.http
def test_content_type_that_is_not_a_media_type_is_400(client):
    response = client.post("/feed=widgets", b"x", "nonsense")
    assert response.status == 400
    assert "not a media type" in response.text
    assert_nothing_stored(client)
