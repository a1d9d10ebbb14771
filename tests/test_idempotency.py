"""A publisher that lost the answer retries with the same Idempotency-Key and gets the message
its first attempt stored: nothing is stored twice."""

import threading

import pytest

from conftest import ATOM_NS

ENTRY = "<entry><title>t</title><content>disk full</content></entry>"


def keyed_post(client, feed: str, key: str, body: str = ENTRY):
    return client.request(
        "POST",
        f"/feed={feed}",
        body.encode(),
        {"Content-Type": "application/atom+xml", "Idempotency-Key": key},
    )


@pytest.mark.http
def test_retry_with_the_same_key_gets_the_stored_message_back(client):
    first = keyed_post(client, "alerts", "cron-db1-2026-11-29T03:00")
    retry = keyed_post(client, "alerts", "cron-db1-2026-11-29T03:00")
    assert first.status == retry.status == 201
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["etag"] == first.headers["etag"]
    assert retry.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert retry.body == first.body
    assert client.get("/feed=alerts").ids() == [first.xml().findtext("a:id", namespaces=ATOM_NS)]


def test_the_retry_leaves_the_feed_as_it_was(client):
    keyed_post(client, "alerts", "k1")
    before = client.get("/feed=alerts")
    keyed_post(client, "alerts", "k1")
    after = client.get("/feed=alerts", If_None_Match=before.headers["etag"])
    assert after.status == 304  # not even the feed's version moved
    assert client.get("/feed=alerts").body == before.body  # nor its time
    client.publish("alerts", "a later one")
    before = client.get("/feed=alerts")
    keyed_post(client, "alerts", "k1")
    assert client.get("/feed=alerts").body == before.body


def test_keys_are_per_feed_and_messages_without_a_key_never_collide(client):
    keyed_post(client, "a", "same")
    keyed_post(client, "b", "same")
    keyed_post(client, "a", "other")
    client.publish("a", "no key")
    client.publish("a", "no key")
    assert len(client.get("/feed=a").ids()) == 4
    assert len(client.get("/feed=b").ids()) == 1


@pytest.mark.http
@pytest.mark.parametrize("key", ["has space", "x" * 201, "caf\u00e9"])
def test_a_key_outside_the_rule_is_400_and_nothing_is_stored(client, key):
    response = client.request(
        "POST",
        "/feed=alerts",
        ENTRY.encode(),
        {"Content-Type": "application/atom+xml", "Idempotency-Key": key},
        server_may_refuse=True,
    )
    if response.headers.get("content-type", "").startswith("text/plain"):
        assert response.status == 400
        assert "Idempotency-Key" in response.text
    assert client.get("/feed=alerts").status == 404


@pytest.mark.parametrize("transport", ["fastcgi", "fastcgi@postgresql", "fastcgi@mariadb"])
def test_concurrent_retries_store_the_message_once(client):
    client.publish("alerts", "first")  # the feed exists: the retries race on the message alone
    answers: list[tuple[int, str]] = []

    def post() -> None:
        response = keyed_post(client, "alerts", "the-same-key")
        answers.append((response.status, response.headers.get("location", "")))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in answers] == [201] * 8
    assert len({location for _, location in answers}) == 1
    assert len(client.get("/feed=alerts").ids()) == 2
