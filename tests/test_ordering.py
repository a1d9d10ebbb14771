"""A consumer that resumes with start_after sees every message of a feed exactly once, in order,
on every database: the order of a feed is its commit order. (With autoincrement ids instead, a
writer that takes id 1 and commits after the writer of id 2 makes a consumer that polls in
between move past 1 for ever: seen on PostgreSQL and MariaDB, never on SQLite.)
"""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

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
            a, _, _ = session.append("orders", Draft("", "", "a", ""), now="2026-01-01T00:00:00.000000Z")
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


PUBLISHER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import fastcgi_client
sockets, count, worker = sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4]
for n in range(count):
    body = f"<entry><content>{worker}-{n}</content></entry>".encode()
    params = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/atommq", "PATH_INFO": "/feed=load",
              "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
              "CONTENT_TYPE": "application/atom+xml", "CONTENT_LENGTH": str(len(body))}
    out = fastcgi_client.request(sockets[n % len(sockets)], params, body)[0]
    if out.startswith(b"Status: 201"):
        print(out.split(b"<id>")[1].split(b"</id>")[0].decode(), flush=True)
    else:
        print("FAILED", out[:200], file=sys.stderr, flush=True)
"""


@pytest.mark.parametrize("transport", ["fastcgi", "fastcgi@postgresql", "fastcgi@mariadb"])
def test_two_web_heads_and_eight_publishing_processes_behave_as_one(client, make_client):
    """Two FastCGI servers on one database, 8 publisher processes spread over both, a consumer
    polling both in turn: every acknowledged message seen once, in one order, by either head."""
    other = make_client(database_url=client.env["ATOMMQ_DATABASE_URL"])
    heads = [client, other]
    client.publish("load", "first")
    other.get("/")  # start the second head
    sockets = ",".join(str(head.fastcgi_server.socket) for head in heads)
    publishers = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(Path(__file__).parent), sockets, "30", str(w)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    seen: list[str] = []
    turn = 0
    while any(p.poll() is None for p in publishers) or turn < 4:
        batch = ids_after(heads[turn % 2], "load", seen[-1] if seen else None)
        seen += batch
        turn += 1
        if not batch:
            time.sleep(0.01)
    outputs = [p.communicate() for p in publishers]
    acknowledged = [line for out, _ in outputs for line in out.split()]
    assert all(not err for _, err in outputs), outputs
    seen += ids_after(heads[turn % 2], "load", seen[-1])
    assert len(acknowledged) == 8 * 30
    assert len(seen) == len(set(seen)) == 1 + 8 * 30
    assert set(seen[1:]) == set(acknowledged)
    assert ids_after(client, "load", None) == ids_after(other, "load", None) == seen


@pytest.mark.parametrize("transport", ["wsgi@postgresql", "wsgi@mariadb"])
def test_a_deadlock_is_retried_inside_the_server_not_handed_to_the_client(client):
    """Another transaction takes a message's idempotency key first and the feed row second, the
    reverse of a publisher's order: the database breaks the deadlock by rolling the publisher
    back, and AtomMQ runs the publish again instead of answering with an error."""
    client.publish("orders", "m0")
    engine = sa.create_engine(client.env["ATOMMQ_DATABASE_URL"], poolclass=sa.NullPool)
    feeds = sa.table("atommq_feeds", sa.column("pk"), sa.column("name"), sa.column("last_seq"))
    answers: list[tuple[int, str]] = []
    with engine.connect() as other:
        transaction = other.begin()
        pk = other.execute(sa.select(feeds.c.pk).where(feeds.c.name == "orders")).scalar_one()
        # Make the database pick the publisher as the victim, so that the retry is what is tested:
        # PostgreSQL lets the first waiter find the deadlock (ours waits 10 s before looking);
        # InnoDB rolls back the lighter transaction (ours carries ballast rows of no feed).
        if client.database == "postgresql":
            other.execute(sa.text("SET LOCAL deadlock_timeout = '10s'"))
        for n in range(50 if client.database == "mariadb" else 0):
            other.execute(
                sa.text(
                    "INSERT INTO atommq_messages (feed_pk, seq, uuid, title, title_type, content, "
                    "content_type, published, updated) VALUES (-1, :n, :uuid, '', '', '', '', '', '')"
                ),
                {"n": n, "uuid": f"00000000-0000-4000-8000-{n:012d}"},
            )
        other.execute(
            sa.text(
                "INSERT INTO atommq_messages (feed_pk, seq, uuid, title, title_type, content, "
                "content_type, published, updated, idempotency_key) VALUES (:pk, 1000, :uuid, '', "
                "'', 'theirs', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'the-key')"
            ),
            {"pk": pk, "uuid": "00000000-0000-4000-8000-000000000bad"},
        )
        publisher = threading.Thread(
            target=lambda: answers.append(
                (
                    r := client.request(
                        "POST",
                        "/feed=orders",
                        b"<entry><content>ours</content></entry>",
                        {"Content-Type": "application/atom+xml", "Idempotency-Key": "the-key"},
                    )
                )
                and (r.status, r.headers.get("idempotent-replayed", ""))
            )
        )
        publisher.start()
        time.sleep(0.5)  # the publisher holds the feed row and waits for our key
        other.execute(sa.update(feeds).where(feeds.c.pk == pk).values(last_seq=feeds.c.last_seq))
        transaction.commit()  # the database rolled the publisher back; it runs again
        publisher.join(timeout=30)
    engine.dispose()
    # The retried publish found the key taken, and answered with that message.
    assert answers == [(201, "true")]
    contents = [e.findtext("a:content", namespaces=ATOM_NS) for e in client.get("/feed=orders").entries()]
    assert contents == ["m0", "theirs"]  # one message for the key
