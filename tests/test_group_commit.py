"""On SQLite, the publishes that a process's threads make while another writer holds the database
are committed together, one COMMIT for all (atommq/batch.py); each still has its own outcome.
SQLite only: a database server commits each connection's transaction alone."""

import fcntl
import threading
import time

import pytest

from atommq import config
from atommq.app import open_store
from atommq.model import Draft
from atommq.session import Session

NOW = "2026-12-03T00:00:00.000000Z"


class RenderFailed(Exception):
    pass


def run_queued(client, works) -> list:
    """Each of `works` through store.write in a thread of its own, started one after another while
    another process holds the write lock, so that all queue behind it; then the lock is freed.
    Returns each one's result or exception, in the order they were started."""
    store = open_store(config.load(client.env))
    outcomes: list = [None] * len(works)

    def write(number: int) -> None:
        try:
            outcomes[number] = store.write(works[number])
        except Exception as error:
            outcomes[number] = error

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(works))]
    try:
        with open(f"{client.db_path}-writer", "rb") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)  # another process's writer, still writing
            for thread in threads:
                thread.start()
                time.sleep(0.05)
            fcntl.flock(lock_file, fcntl.LOCK_UN)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        store.close()
    return outcomes


def publish(text: str):
    def work(session: Session):
        message, _, _ = session.append("queued", Draft("", "", text, ""), now=NOW)
        return message.id

    return work


@pytest.mark.parametrize("transport", ["wsgi"])
def test_publishes_queued_behind_another_writer_are_each_stored_in_the_order_they_came(client):
    client.publish("queued", "before")

    def fails_after_storing(session: Session):
        publish("never stored")(session)
        raise RenderFailed("its entry could not be made")

    works = [publish("one"), publish("two"), fails_after_storing, publish("three")]
    outcomes = run_queued(client, works)
    assert isinstance(outcomes[2], RenderFailed)  # its own error, to its own publisher
    stored = [outcomes[0], outcomes[1], outcomes[3]]
    assert all(isinstance(message_id, str) for message_id in stored), outcomes
    feed = client.whole_feed("queued")
    assert feed[1:] == stored  # every other one stored, in the order they came
    response = client.get("/feed=queued")
    assert b"never stored" not in response.body


@pytest.mark.parametrize("transport", ["wsgi"])
def test_a_publish_that_the_database_refuses_fails_alone_and_stores_nothing(client):
    """A database error rolls back the transaction the queued publishes share: the one that
    caused it fails, and the others are stored all the same (run again in a new transaction)."""
    client.publish("queued", "before")

    def breaks_a_constraint(session: Session):
        publish("never stored")(session)
        session.append("queued", Draft(None, "", "no title", ""), now=NOW)  # type: ignore[arg-type]

    outcomes = run_queued(client, [publish("one"), breaks_a_constraint, publish("two")])
    assert "NOT NULL" in str(outcomes[1])
    stored = [outcomes[0], outcomes[2]]
    assert all(isinstance(message_id, str) for message_id in stored), outcomes
    assert client.whole_feed("queued")[1:] == stored
    assert b"never stored" not in client.get("/feed=queued").body
