"""The same feeds, messages and service document as JSON Feed 1.1, chosen by Accept or ?format=json,
with every message's content usable without decoding by hand (atommq/jsonfeed.py)."""

import base64
import json

import pytest

from conftest import ATOM_NS, PREFIX

FEED_JSON = "application/feed+json"
CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def items(response) -> list[dict]:
    assert response.status == 200, response.text
    return json.loads(response.body)["items"]


@pytest.mark.http
def test_a_feed_pages_through_json_as_through_atom(make_client):
    client = make_client(page_size="2")
    for n in range(5):
        client.publish("jobs", f"job {n}")
    ids, url = [], "/feed=jobs"
    while url:
        response = client.get(url, Accept=FEED_JSON)
        assert response.headers["content-type"] == FEED_JSON
        assert response.headers["vary"] == "Accept"
        document = json.loads(response.body)
        ids += [item["id"] for item in document["items"]]
        url = document.get("next_url")
    assert ids == client.whole_feed("jobs")
    assert [item["content_text"] for item in items(client.get("/feed=jobs?format=json"))] == [
        "job 0",
        "job 1",
    ]


@pytest.mark.http
def test_format_json_in_the_query_is_json_for_curl_and_its_next_link_keeps_it(make_client):
    client = make_client(page_size="1")
    first = client.publish("jobs", "a").xml().findtext("a:id", namespaces=ATOM_NS)
    client.publish("jobs", "b")
    response = client.get(f"/feed=jobs?start_at={first}&format=json")  # curl sends Accept: */*
    assert response.headers["content-type"] == FEED_JSON
    document = json.loads(response.body)
    assert [item["content_text"] for item in document["items"]] == ["a"]
    assert document["next_url"].endswith("&format=json")
    following = client.get(document["next_url"])
    assert [item["content_text"] for item in items(following)] == ["b"]
    assert (
        client.get("/feed=jobs?format=atom", Accept=FEED_JSON)
        .headers["content-type"]
        .startswith("application/atom+xml")
    )


@pytest.mark.parametrize(
    "accept, json_type",
    [
        ("*/*", None),
        (CHROME, "html"),  # a browser: a page (test_pages.py)
        ("application/atom+xml", None),
        ("application/atom+xml, application/json;q=0.5", None),
        ("application/json", "application/json"),
        ("application/json, application/atom+xml;q=0.5", "application/json"),
        ("application/feed+json, */*;q=0.1", FEED_JSON),
    ],
)
def test_accept_chooses_json_only_when_the_client_prefers_it(client, accept, json_type):
    client.publish("jobs", "a")
    for path in ("/feed=jobs", "/"):
        response = client.get(path, Accept=accept)
        assert response.status == 200 and response.headers["vary"] == "Accept"
        if json_type == "html":
            assert response.headers["content-type"] == "text/html; charset=utf-8", (path, accept)
        elif json_type is None:
            assert response.headers["content-type"].startswith("application/atom"), (path, accept)
        else:
            assert response.headers["content-type"] == (json_type if path != "/" else "application/json")


def test_json_and_atom_have_their_own_etags_and_a_json_poll_gets_304(client):
    message = client.publish("jobs", "a").xml().findtext("a:id", namespaces=ATOM_NS)
    atom_tag = client.get("/feed=jobs").headers["etag"]
    json_tag = client.get("/feed=jobs", Accept=FEED_JSON).headers["etag"]
    assert atom_tag != json_tag
    assert client.get("/feed=jobs", Accept=FEED_JSON, If_None_Match=json_tag).status == 304
    assert client.get("/feed=jobs", Accept=FEED_JSON, If_None_Match=atom_tag).status == 200
    entry = f"/feed=jobs/entry={message.removeprefix('urn:uuid:')}"
    entry_tag = client.get(entry, Accept=FEED_JSON).headers["etag"]
    assert entry_tag != client.get(entry).headers["etag"]
    assert client.get(entry, Accept=FEED_JSON, If_None_Match=entry_tag).status == 304


@pytest.mark.http
def test_errors_stay_one_line_of_text_for_a_json_client(client):
    missing = client.get("/feed=nothing", Accept=FEED_JSON)
    assert missing.status == 404 and missing.headers["content-type"].startswith("text/plain")
    bad = client.get("/feed=nothing?format=yaml")
    assert bad.status == 400 and "format=json" in bad.text


def test_a_message_is_an_item_and_the_service_document_lists_the_feeds(client):
    client.post(
        "/feed=jobs", "<entry><title>T</title><author><name>cron</name></author><content>x</content></entry>"
    )
    entry_url = client.publish("jobs", "y").headers["location"]
    item = json.loads(client.get(entry_url, Accept=FEED_JSON).body)
    assert item["url"] == entry_url and item["content_text"] == "y" and item["title"] == "t"
    first = items(client.get("/feed=jobs", Accept=FEED_JSON))[0]
    assert first["title"] == "T" and first["authors"] == [{"name": "cron"}]
    assert first["date_published"] == first["date_modified"]
    listing = json.loads(client.get("/", Accept="application/json").body)
    assert [(f["name"], f["url"]) for f in listing["feeds"]] == [
        ("jobs", f"http://localhost{PREFIX}/feed=jobs")
    ]


@pytest.mark.parametrize(
    "body, content_type, field, expected, extension",
    [
        ("hello, world", "text/plain", "content_text", "hello, world", {"content_type": "text"}),
        ("a,b\n1,2\n", "text/csv", "content_text", "a,b\n1,2\n", {"content_type": "text/csv"}),
        (
            '<entry><content type="html">&lt;b&gt;bold&lt;/b&gt;</content></entry>',
            "application/atom+xml",
            "content_html",
            "<b>bold</b>",
            {"content_type": "html"},
        ),
        (
            '<entry><content type="application/vnd.order+xml"><order n="1"/></content></entry>',
            "application/atom+xml",
            "content_text",
            '<order n="1"/>',
            {"content_type": "application/vnd.order+xml"},
        ),
    ],
)
def test_text_html_and_xml_content_come_back_as_stored(
    client, body, content_type, field, expected, extension
):
    assert client.post("/feed=jobs", body, content_type).status == 201
    (item,) = items(client.get("/feed=jobs?format=json"))
    assert item[field] == expected
    assert item["_atommq"] == extension


def test_xhtml_content_and_titles_come_back_with_their_types(client):
    xhtml = '<div xmlns="http://www.w3.org/1999/xhtml"><p>hi</p></div>'
    body = f'<entry><title type="html">&lt;i&gt;T&lt;/i&gt;</title><content type="xhtml">{xhtml}</content></entry>'
    assert client.post("/feed=jobs", body, "application/atom+xml").status == 201
    (item,) = items(client.get("/feed=jobs?format=json"))
    assert item["content_html"] == xhtml and item["title"] == "<i>T</i>"
    assert item["_atommq"] == {"content_type": "xhtml", "title_type": "html"}


def test_a_json_message_reaches_jq_as_its_own_fields_byte_for_byte(client):
    """jq -r '.items[0].content_text | fromjson | .host'"""
    sent = '{"host": "db1", "load": [0.5, 1e3], "note": "caf\u00e9 \\u00e9"}'.encode()
    assert client.post("/feed=metrics", sent, "application/json").status == 201
    (item,) = items(client.get("/feed=metrics?format=json"))
    assert item["content_text"].encode("utf-8") == sent
    assert json.loads(item["content_text"])["host"] == "db1"
    assert item["_atommq"] == {"content_type": "application/json"}


def test_binary_content_is_base64_and_says_so(client):
    sent = bytes(range(256))
    assert client.post("/feed=files", sent, "application/octet-stream").status == 201
    (item,) = items(client.get("/feed=files?format=json"))
    assert base64.b64decode(item["content_text"]) == sent
    assert item["_atommq"] == {"content_type": "application/octet-stream", "content_encoding": "base64"}
