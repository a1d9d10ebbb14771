"""A consumer that resumes with start_after sees every message of a feed exactly once, in order,
on every database: the order of a feed is its commit order (FIELD-NOTES 4, "the visibility gap").
"""

import threading
import time

import pytest

from atommq import config
from atommq.app import open_store
from atommq.model import Draft
from conftest import ATOM_NS

DATABASES = ["wsgi", "wsgi@postgresql", "wsgi@mariadb"]


def ids_after(client, feed: str, cursor: str | None) -> list[str]:
    url = f"/feed={feed}" + (f"?start_after={cursor}" if cursor else "")
    response = client.get(url)
    assert response.status == 200
    return response.ids()


@pytest.mark.parametrize("transport", DATABASES)
def test_a_message_committed_first_is_never_overtaken_by_a_later_one(client):
    """Publisher A holds its transaction open; publisher B posts meanwhile. B must not become
    visible before A, or a consumer that polls in between moves past A and never sees it."""
    first = client.publish("orders", "m0").xml().findtext("a:id", namespaces=ATOM_NS)
    store = open_store(config.load(client.env))
    results: list[int] = []
    publisher_b = threading.Thread(
        target=lambda: results.append(
            client.post("/feed=orders", "<entry><content>b</content></entry>").status
        )
    )
    try:
        with store.transaction() as session:  # publisher A, slow to commit
            a = session.append(
                "orders",
                Draft("", "", "a", ""),
                "00000000-0000-4000-8000-00000000000a",
                "00000000-0000-4000-8000-0000000000fe",
                "2026-01-01T00:00:00.000000Z",
            )
            publisher_b.start()
            time.sleep(1.0)  # time enough for B to commit, were it not made to wait for A
            assert ids_after(client, "orders", first) == []  # neither is visible yet
        publisher_b.join(timeout=30)
    finally:
        store.close()
    assert results == [201]
    after = ids_after(client, "orders", first)
    assert after[0] == a.id and len(after) == 2  # A first, then B


@pytest.mark.parametrize("transport", ["fastcgi", "fastcgi@postgresql", "fastcgi@mariadb"])
def test_consumer_polling_during_concurrent_publishing_sees_every_message_once_in_order(client):
    client.publish("load", "first")
    acknowledged: list[str] = []
    failures: list[int] = []
    lock = threading.Lock()

    def publish(worker: int) -> None:
        for n in range(40):
            response = client.post("/feed=load", f"<entry><content>{worker}-{n}</content></entry>")
            with lock:
                if response.status == 201:
                    acknowledged.append(response.xml().findtext("a:id", namespaces=ATOM_NS))
                else:
                    failures.append(response.status)

    publishers = [threading.Thread(target=publish, args=(w,)) for w in range(8)]
    for thread in publishers:
        thread.start()
    seen: list[str] = []
    cursor = None
    while any(t.is_alive() for t in publishers) or len(seen) < len(acknowledged) + 1:
        batch = ids_after(client, "load", cursor)
        seen += batch
        cursor = seen[-1] if seen else None
        if not batch:
            time.sleep(0.01)
        assert len(seen) <= 1 + 8 * 40
    for thread in publishers:
        thread.join()
    assert failures == []
    assert len(seen) == len(set(seen)) == 1 + 8 * 40  # nothing doubled
    assert set(seen[1:]) == set(acknowledged)  # nothing lost or skipped
    assert ids_after(client, "load", None)[: len(seen)] == seen  # in the feed's own order
