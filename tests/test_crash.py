"""kill -9 of the server in the middle of a publishing load: after a restart every acknowledged
message is there, once, nothing is half-written, and the feed goes on."""

import sqlite3
import threading
import time

import pytest

from conftest import ATOM_NS


@pytest.mark.parametrize("transport", ["fastcgi", "fastcgi@postgresql", "fastcgi@mariadb"])
def test_acknowledged_messages_survive_kill_9_of_the_server(client):
    client.publish("load", "before")
    acknowledged: list[str] = []
    stop = threading.Event()

    def publish(worker: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                response = client.post("/feed=load", f"<entry><content>{worker}-{n}</content></entry>")
            except OSError:  # the server died under this request: no answer, no promise
                return
            if response.status == 201:
                acknowledged.append(response.xml().findtext("a:id", namespaces=ATOM_NS))
            n += 1

    publishers = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for thread in publishers:
        thread.start()
    time.sleep(1.5)
    client.fastcgi_server.process.kill()  # SIGKILL: no cleanup, transactions cut wherever they are
    client.fastcgi_server.process.wait()
    stop.set()
    for thread in publishers:
        thread.join(timeout=30)
    client.stop_server()  # the next request starts a new server on the same database
    assert len(acknowledged) > 20, "the load was too light to mean anything"

    feed = client.whole_feed("load")
    assert len(feed) == len(set(feed))
    assert set(acknowledged) <= set(feed)  # every acknowledged message is there
    assert len(feed) <= len(acknowledged) + 1 + 4  # at most one unacknowledged per publisher
    after = client.publish("load", "after").xml().findtext("a:id", namespaces=ATOM_NS)
    assert client.whole_feed("load") == [*feed, after]
    if client.database == "sqlite":
        with sqlite3.connect(client.db_path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
