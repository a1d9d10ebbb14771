"""Publishing at full load, on every database, through two real web servers that each run
several threaded FastCGI processes (deploy/lighttpd.conf: 2 processes of 8 threads): every
acknowledged message stored exactly once, no 5xx; a lock held past the wait limit is a 503
with Retry-After, after which a retry with the same Idempotency-Key stores the message once.
"""

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import ATOM_NS

HEADS = ["lighttpd-fastcgi", "lighttpd-fastcgi@postgresql", "lighttpd-fastcgi@mariadb"]

# One publishing process: waits for the start file, then posts COUNT messages over the web heads
# in turn, and prints one JSON line per message: its feed, final status, message id, and the
# statuses of the attempts before (503s, retried after Retry-After with the same key when RETRY).
PUBLISHER = r"""
import http.client, json, os, sys, time
heads, count, worker, start, retry = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "retry"
while not os.path.exists(start):
    time.sleep(0.005)
for n in range(count):
    feed = "fresh" if n == 0 else "load"  # the first posts of all 8 create one feed together
    body = f"<entry><content>{worker}-{n}</content></entry>".encode()
    earlier = []
    while True:
        host, port = heads[(n + len(earlier)) % len(heads)].split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("POST", f"/atommq/feed={feed}", body, {
            "Content-Type": "application/atom+xml", "Idempotency-Key": f"{worker}-{n}"})
        answer = connection.getresponse()
        text = answer.read().decode()
        connection.close()
        if answer.status == 503 and retry and len(earlier) < 20:
            earlier.append([503, answer.getheader("Retry-After")])
            time.sleep(int(answer.getheader("Retry-After")))
            continue
        break
    message_id = text.split("<id>")[1].split("</id>")[0] if answer.status == 201 else text
    print(json.dumps([feed, answer.status, message_id, earlier]), flush=True)
"""


def start_publishers(heads, tmp: Path, count: int, retry: bool) -> tuple[list[subprocess.Popen[str]], Path]:
    addresses = ",".join(f"127.0.0.1:{head.web_server.port}" for head in heads)
    start = tmp / "start"
    publishers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                PUBLISHER,
                addresses,
                str(count),
                str(w),
                str(start),
                "retry" if retry else "once",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    return publishers, start


def outcomes(publishers: list[subprocess.Popen[str]]) -> list[list]:
    done = [p.communicate(timeout=600) for p in publishers]
    assert all(not err for _, err in done), [err for _, err in done]
    return [json.loads(line) for out, _ in done for line in out.splitlines()]


def two_heads(client, make_client):
    other = make_client(database_url=client.database_url)
    client.publish("load", "first")
    other.get("/")  # both servers up before the publishers start
    return [client, other]


@pytest.mark.parametrize("transport", HEADS)
def test_eight_publishing_processes_over_two_web_servers_store_every_message_once(
    client, make_client, tmp_path
):
    heads = two_heads(client, make_client)
    publishers, start = start_publishers(heads, tmp_path, 250, retry=False)
    start.touch()
    seen: list[str] = []  # a consumer polls the feed meanwhile, from either head in turn
    turn = 0
    while any(p.poll() is None for p in publishers):
        response = heads[turn % 2].get("/feed=load" + (f"?start_after={seen[-1]}" if seen else ""))
        assert response.status == 200
        seen += response.ids()
        turn += 1
        time.sleep(0.005)
    answers = outcomes(publishers)
    assert [a for a in answers if a[1] != 201] == []  # no 5xx, nothing refused
    assert len(answers) == 8 * 250
    for feed in ("fresh", "load"):
        acknowledged = [a[2] for a in answers if a[0] == feed]
        stored = heads[0].whole_feed(feed)
        if feed == "load":
            stored = stored[1:]  # "first", published before
        assert len(stored) == len(set(stored)) == len(acknowledged)  # nothing doubled
        assert set(stored) == set(acknowledged)  # nothing lost
    everything = heads[0].whole_feed("load")
    assert heads[1].whole_feed("load") == everything  # one order, whichever head is asked
    assert everything[: len(seen)] == seen  # the consumer saw every message once, in that order
    assert "Traceback" not in heads[0].log + heads[1].log


def hold_the_feed_lock(client, seconds: float) -> None:
    """Another writer keeps the feed locked for longer than AtomMQ's lock wait (5 s)."""
    if client.database == "sqlite":
        holder = sqlite3.connect(client.db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        holder.execute("ROLLBACK")
        holder.close()
        return
    engine = sa.create_engine(client.database_url, poolclass=sa.NullPool)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE atommq_feeds SET last_seq = last_seq WHERE name = 'load'"))
        time.sleep(seconds)
    engine.dispose()


@pytest.mark.parametrize("transport", HEADS)
def test_a_lock_held_too_long_is_503_and_the_retry_stores_the_message_once(client, make_client, tmp_path):
    heads = two_heads(client, make_client)
    publishers, start = start_publishers(heads, tmp_path, 60, retry=True)
    start.touch()
    while len(heads[0].get("/feed=load").ids()) < 1 + 8 * 10:
        time.sleep(0.05)  # publishing is under way on both heads
    holder = threading.Thread(target=hold_the_feed_lock, args=(client, 7.0))
    holder.start()
    holder.join()
    answers = outcomes(publishers)
    refused = [attempt for a in answers for attempt in a[3]]
    assert refused and all(attempt == [503, "1"] for attempt in refused)  # with Retry-After: 1
    assert [a for a in answers if a[1] != 201] == []  # every retry then succeeded
    stored = heads[1].whole_feed("load")[1:]
    acknowledged = [a[2] for a in answers if a[0] == "load"]
    assert len(stored) == len(set(stored)) == 8 * 59 and set(stored) == set(acknowledged)
    contents = [e.findtext("a:content", namespaces=ATOM_NS) for e in heads[0].get("/feed=load").entries()]
    assert sorted(contents[1:]) == sorted(f"{w}-{n}" for w in range(8) for n in range(1, 60))
    # The servers that answered 503 go on serving with the same processes and connections.
    assert heads[0].publish("load", "after").status == heads[1].publish("load", "after").status == 201
    # The writer whose turn met the held lock logs why (a cause from the database); the others,
    # which waited for that turn (across processes and heads), answer 503 without a new reason.
    assert "503 Service Unavailable" in heads[0].log + heads[1].log
