"""Messages removed from a feed's start (retention) are told, never hidden: a cursor that named
one gets 410 Gone, saying how many messages went unread and where the feed now starts; a cursor
the feed never had stays a 400."""

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from conftest import ATOM_NS, ROOT


def publish_many(client, feed: str, count: int) -> list[str]:
    return [client.publish(feed, f"m{n}").xml().findtext("a:id", namespaces=ATOM_NS) for n in range(count)]


def remove_oldest(client, feed: str, count: int) -> None:
    """What retention does: the feed's oldest messages deleted."""
    engine = sa.create_engine(client.database_url)
    with engine.begin() as connection:
        pk = connection.execute(sa.text("SELECT pk FROM atommq_feeds WHERE name = :n"), {"n": feed}).scalar()
        oldest = (
            connection.execute(
                sa.text("SELECT seq FROM atommq_messages WHERE feed_pk = :pk ORDER BY seq LIMIT :c"),
                {"pk": pk, "c": count},
            )
            .scalars()
            .all()
        )
        connection.execute(
            sa.text("DELETE FROM atommq_messages WHERE feed_pk = :pk AND seq <= :s"),
            {"pk": pk, "s": max(oldest)},
        )
    engine.dispose()


def under_load(client, limits, consumer) -> list[str]:
    """8 publishers of 40 messages each to feed jobs, beside `consumer(done)` (done: an Event set
    once they finish) and prune with `limits` looping, then one prune more; the refusals."""
    import datetime
    import threading

    from atommq import config
    from atommq.app import open_store

    refused: list[str] = []
    done = threading.Event()

    def publisher(n: int) -> None:
        for i in range(40):
            response = client.post("/feed=jobs", f"<entry><content>{n}.{i}</content></entry>")
            if response.status != 201:
                refused.append(f"{response.status} {response.text}")

    store = open_store(config.load({"ATOMMQ_DATABASE_URL": client.database_url}))

    def pruner() -> None:
        while not done.is_set():
            store.prune("jobs", limits, datetime.datetime.now(datetime.UTC))

    workers = [threading.Thread(target=publisher, args=(n,)) for n in range(8)]
    others = [threading.Thread(target=consumer, args=(done,)), threading.Thread(target=pruner)]
    for thread in workers + others:
        thread.start()
    for thread in workers:
        thread.join(timeout=120)
    done.set()
    for thread in others:
        thread.join(timeout=120)
    store.prune("jobs", limits, datetime.datetime.now(datetime.UTC))
    store.close()
    return refused


def test_messages_removed_between_finding_the_cursor_and_reading_its_page_are_never_skipped(client):
    """Retention removes messages after the request found the cursor and before it reads the
    page. Each statement of a read sees what is committed when it runs (READ COMMITTED on the
    database servers, database.py; pysqlite begins no transaction for a read): the answer is
    the 410, never a page that starts further on (seen: 8 publishers, prune looping, and a
    consumer on MariaDB skipped four messages unseen)."""
    from atommq import config
    from atommq.app import open_store
    from atommq.errors import Gone

    ids = publish_many(client, "jobs", 8)
    store = open_store(config.load(client.env))
    try:
        # After m1, with m0..m3 removed; then from m5 on, with m4..m6 removed.
        for cursor, inclusive, removed, which in ((1, False, 4, "after it"), (5, True, 3, "from it on")):
            with store.transaction() as session:
                position = session.locate("jobs", ids[cursor], inclusive)
                remove_oldest(client, "jobs", removed)
                with pytest.raises(Gone) as gone:
                    session.read(position, 10)
                assert f"2 messages {which} went with them unread" in str(gone.value)
    finally:
        store.close()


def test_messages_removed_while_a_page_of_old_messages_is_rendered_are_told_or_not_shown(client):
    """Messages stored before the renderings columns are rendered on read, by a second
    statement: retention may remove some of the page in between. A cursor's page is then the
    410; a page without a cursor starts where the feed now does (it was a page with no
    messages and a next link)."""
    from atommq import config
    from atommq.app import open_store
    from atommq.errors import Gone

    ids = publish_many(client, "jobs", 8)
    engine = sa.create_engine(client.database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE atommq_messages SET atom = NULL"))
    engine.dispose()
    removing: list[int] = []

    def remove_before_rendering(conn, cursor, statement, parameters, context, executemany) -> None:
        if removing and "atommq_messages.seq IN" in statement:  # the unrendered messages
            remove_oldest(client, "jobs", removing.pop())

    store = open_store(config.load(client.env))
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", remove_before_rendering)
    try:
        with store.transaction() as session:
            position = session.locate("jobs", ids[1], False)
            removing.append(4)  # m0..m3: m2 and m3, after the cursor, go unread
            with pytest.raises(Gone) as gone:
                session.read(position, 10)
            assert "2 messages after it went with them unread" in str(gone.value)
            removing.append(2)  # m4 and m5, the whole page of two read without a cursor
            page = session.read(session.locate("jobs", None, False), 2)
        assert not removing and [m.id for m in page.entries] == ids[6:8] and not page.more
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", remove_before_rendering)
        store.close()


def test_a_cursor_on_a_removed_message_is_410_with_what_was_missed_and_where_to_go_on(client):
    ids = publish_many(client, "jobs", 6)
    remove_oldest(client, "jobs", 4)  # m0..m3 gone; m4, m5 kept
    gone = client.get(f"/feed=jobs?start_after={ids[1]}")
    assert gone.status == 410
    assert "2 messages after it went with them unread" in gone.text  # m2, m3
    assert gone.headers["link"] == '<http://localhost/atommq/feed=jobs>; rel="first"'
    assert client.get(gone.headers["link"][1:].partition(">")[0]).ids() == ids[4:]
    assert "1 message after it" in client.get(f"/feed=jobs?start_after={ids[2]}").text
    assert "2 messages from it on" in client.get(f"/feed=jobs?start_at={ids[2]}").text
    # The newest removed message: nothing after it was missed, so the page after it follows.
    assert client.get(f"/feed=jobs?start_after={ids[3]}").ids() == ids[4:]
    # Still held: as before.
    assert client.get(f"/feed=jobs?start_after={ids[4]}").ids() == ids[5:]
    json_gone = client.get(f"/feed=jobs?start_after={ids[0]}&format=json")
    assert json_gone.status == 410 and json_gone.headers["link"].endswith(
        'feed=jobs?format=json>; rel="first"'
    )


def test_a_cursor_the_feed_never_had_stays_400_after_any_removal(client):
    ids = publish_many(client, "jobs", 3)
    other = publish_many(client, "other", 3)
    remove_oldest(client, "jobs", 3)
    remove_oldest(client, "other", 3)
    for cursor in (
        other[0],  # another feed's, removed there
        "urn:uuid:00000000-0000-4000-8000-000000000000",  # made up
        ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1"),  # one of ours, altered
    ):
        response = client.get(f"/feed=jobs?start_after={cursor}")
        assert response.status == 400 and "has no message with id" in response.text, cursor
    assert client.get(f"/feed=jobs?start_after={ids[0]}").status == 410


def test_a_waiting_request_whose_cursor_was_removed_gets_the_410(client):
    ids = publish_many(client, "jobs", 3)
    remove_oldest(client, "jobs", 2)
    response = client.get(f"/feed=jobs?start_after={ids[0]}&wait=5")
    assert response.status == 410 and "1 message after it" in response.text


def test_a_waiting_request_whose_cursor_is_removed_meanwhile_but_missed_nothing_gets_the_next(client):
    import threading

    ids = publish_many(client, "jobs", 2)
    answers = []
    waiting = threading.Thread(
        target=lambda: answers.append(client.get(f"/feed=jobs?start_after={ids[1]}&wait=10"))
    )
    waiting.start()
    time.sleep(0.5)
    remove_oldest(client, "jobs", 2)  # the cursor's own message too: nothing after it is missed
    time.sleep(0.3)
    new = publish_many(client, "jobs", 1)
    waiting.join(timeout=15)
    assert answers[0].status == 200 and answers[0].ids() == new


def prune(client, rules: str, *flags: str) -> str:
    """`atommq prune`, run as from cron, on the client's database with these [retention] rules."""
    ini = client.tmp / "retention.ini"
    ini.write_text(f"[atommq]\n[retention]\n{rules}\n")
    env = {**os.environ, "ATOMMQ_DATABASE_URL": client.database_url, "ATOMMQ_CONFIG": str(ini)}
    done = subprocess.run(
        [sys.executable, "-m", "atommq", "prune", *flags], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_prune_keeps_the_newest_by_count_first_matching_rule_deciding(client):
    ids = publish_many(client, "jobs", 7)
    others = publish_many(client, "alerts.disk", 3)
    rules = "alerts.* = 1 message\njobs = 3 messages\n* = 1 message"
    assert prune(client, rules, "--dry-run") == (
        "alerts.disk: would remove 2 (keeps 1 message)\njobs: would remove 4 (keeps 3 messages)\n"
        "would remove 6 messages in all\n"
    )
    assert client.whole_feed("jobs") == ids  # a dry run removes nothing
    assert "jobs: removed 4 (keeps 3 messages)" in prune(client, rules)
    assert client.whole_feed("jobs") == ids[4:] and client.whole_feed("alerts.disk") == others[2:]
    assert "2 messages after it" in client.get(f"/feed=jobs?start_after={ids[1]}").text
    assert prune(client, rules) == "removed 0 messages in all\n"
    assert client.publish("jobs", "new").status == 201  # the counter goes on: ids stay unique


def test_prune_by_age_removes_a_run_from_the_oldest_and_keeps_any_message_younger(client):
    ids = publish_many(client, "jobs", 5)
    engine = sa.create_engine(client.database_url)
    with engine.begin() as connection:  # seq 1, 2 and 4 old; 3 young (stored out of time order)
        connection.execute(
            sa.text(
                "UPDATE atommq_messages SET published = '2000-01-01T00:00:00.000000Z' WHERE seq IN (1, 2, 4)"
            )
        )
    engine.dispose()
    assert "jobs: removed 2 (keeps 30 days)" in prune(client, "jobs = 30 days")
    assert client.whole_feed("jobs") == ids[2:]


def test_prune_removes_in_batches_and_leaves_exactly_what_the_rule_keeps(client):
    ids = publish_many(client, "jobs", 1111)
    assert "jobs: removed 1011 (keeps 100 messages)" in prune(client, "jobs = 100 messages")
    assert client.whole_feed("jobs") == ids[-100:]


def test_bad_retention_rules_stop_start_up_naming_the_line(tmp_path):
    from atommq import config
    from atommq.errors import ConfigError

    for line, says in [
        ("jobs = 30 dayz", "'30 dayz' is not a limit"),
        ("jobs = 0 messages", "'0 messages' is not a limit"),
        ("jobs = 1 day, 2 days", "'2 days' is not a limit"),
        ("jobs = ", "no limit"),
    ]:
        ini = tmp_path / "atommq.ini"
        ini.write_text(f"[atommq]\n[retention]\n{line}\n")
        with pytest.raises(ConfigError) as raised:
            config.load({"ATOMMQ_CONFIG": str(ini)})
        assert says in str(raised.value) and "[retention] jobs" in str(raised.value), line
    ini.write_text("[atommq]\n[retention]\nalerts.* = 2 weeks, 1000 messages\n")
    assert str(config.load({"ATOMMQ_CONFIG": str(ini)}).retention[0][1]) == "2 weeks, 1000 messages"


@pytest.mark.parametrize("transport", ["wsgi", "wsgi@postgresql", "wsgi@mariadb", "fastcgi"])
def test_publishing_alone_holds_a_feed_near_its_limit_without_cron(make_client, tmp_path):
    """One publish in 64 prunes its feed once answered (app.PRUNE_EVERY; under FastCGI, after
    flup sent the answer): a feed that a rule keeps at 10 messages holds at most 10 + 63 at any
    time, and what went is told as gone."""
    ini = tmp_path / "retention.ini"
    ini.write_text("[atommq]\n[retention]\njobs = 10 messages\n")
    client = make_client(config=str(ini))
    ids = publish_many(client, "jobs", 150)
    kept = client.whole_feed("jobs")
    assert 10 <= len(kept) <= 10 + 63 and kept == ids[-len(kept) :]
    assert client.get(f"/feed=jobs?start_after={ids[0]}").status == 410
    assert "ERROR" not in client.log and "Traceback" not in client.log


@pytest.mark.parametrize("transport", ["fastcgi", "fastcgi@postgresql", "fastcgi@mariadb"])
def test_pruning_under_load_keeps_what_the_rule_keeps_in_order_and_tells_every_gap(make_client, tmp_path):
    """8 publishers and a consumer while `prune` runs again and again: no publish refused, no
    message the rule keeps removed, and the consumer sees messages in order, each one after the
    one before it unless a 410 told it that messages went."""
    import time

    from atommq.model import seq_in
    from atommq.retention import Limits

    ini = tmp_path / "retention.ini"
    ini.write_text("[atommq]\n[retention]\njobs = 50 messages\n")
    client = make_client(config=str(ini))
    client.publish("jobs", "first")
    feed_uuid = client.get("/feed=jobs").xml().findtext("a:id", namespaces=ATOM_NS).removeprefix("urn:uuid:")
    seen: list[int] = []
    gaps: list[str] = []

    def consumer(done) -> None:
        cursor = ""
        while not done.is_set() or cursor != last_id():
            response = client.get(f"/feed=jobs?start_after={cursor}")
            if response.status == 410:
                gaps.append(response.text)
                seen.append(-1)  # told: what follows may skip
                cursor = ""
                continue
            ids = response.ids()
            seen.extend(seq_in(i.removeprefix("urn:uuid:"), feed_uuid) for i in ids)
            cursor = ids[-1] if ids else cursor
            if ids and not gaps:  # a slow consumer, sure to fall behind the rule once, and be told
                deadline = time.monotonic() + 60
                while oldest() <= (seen[-1] or 0) + 1 and time.monotonic() < deadline and not done.is_set():
                    time.sleep(0.05)
            else:
                time.sleep(0.3)

    def oldest() -> int:
        first = client.get("/feed=jobs").ids()[0]
        return seq_in(first.removeprefix("urn:uuid:"), feed_uuid) or 0

    def last_id() -> str:
        return client.get("/feed=jobs?last=1").ids()[-1]

    refused = under_load(client, Limits(max_messages=50), consumer)
    assert not refused, refused[:3]
    kept = [seq_in(i.removeprefix("urn:uuid:"), feed_uuid) for i in client.whole_feed("jobs")]
    assert kept == list(range(321 - 49, 322)), "the newest 50 are kept, and only they"
    runs = [run for run in " ".join(map(str, seen)).split("-1")]
    for run in runs:  # between two 410s, each message follows the one before it
        numbers = [int(x) for x in run.split()]
        breaks = [(a, b) for a, b in zip(numbers, numbers[1:], strict=False) if b != a + 1]
        assert not breaks, f"skipped or repeated without a 410: {breaks} in {numbers}"
    assert None not in seen and gaps and all("went with them unread" in gap for gap in gaps), gaps


@pytest.mark.parametrize("transport", ["wsgi"])
def test_prune_gives_a_sqlite_files_space_back(client):
    """A file made by this AtomMQ shrinks once pruned (at the next checkpoint)."""
    import sqlite3

    for n in range(300):
        assert client.post("/feed=big", f"{n}:" + "x" * 10_000, "text/plain").status == 201

    def size_after_checkpoint() -> int:
        with sqlite3.connect(client.db_path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return client.db_path.stat().st_size

    before = size_after_checkpoint()
    said = prune(client, "big = 10 messages")
    assert "big: removed 290" in said and "MB back to the file system" in said
    after = size_after_checkpoint()
    assert after < before / 5, (before, after)


@pytest.mark.parametrize("transport", ["wsgi"])
def test_prune_says_how_to_let_an_older_sqlite_file_shrink(make_client, tmp_path):
    import sqlite3

    old = tmp_path / "old.db"  # made before AtomMQ set auto_vacuum: it stays off
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE made_before (x)")
    client = make_client(database_url=f"sqlite:///{old}")
    publish_many(client, "big", 2)
    said = prune(client, "big = 1 message")
    assert "big: removed 1" in said and "sqlite3 FILE 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'" in said
