"""Consumers the server knows: PUT /feed=NAME/consumer=CNAME keeps the id of the last message a
consumer processed, If-Match keeps two of one name from moving it backwards, the service
document shows each one's lag, retention can keep what one has not read (up to a hard limit),
and a feed can be deleted by an admin, its old cursors then told they are gone."""

import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
from lxml import etree
from test_access import PASSWORDS, login, with_rules
from test_retention import prune, publish_many, remove_oldest, under_load

from conftest import ROOT

AMQ = "tag:atommq,2026:ns"


def put(client, feed: str, consumer: str, message_id: str, **headers: str):
    return client.request(
        "PUT",
        f"/feed={feed}/consumer={consumer}",
        message_id.encode(),
        {"Content-Type": "text/plain", **{k.replace("_", "-"): v for k, v in headers.items()}},
    )


def lag(client, feed: str, consumer: str) -> dict:
    response = client.get(f"/feed={feed}/consumer={consumer}?format=json")
    assert response.status == 200, response.text
    return json.loads(response.body)


def test_a_consumer_keeps_its_last_message_on_the_server(client):
    ids = publish_many(client, "jobs", 3)
    assert client.get("/feed=jobs/consumer=mailer").status == 404
    made = put(client, "jobs", "mailer", ids[0])
    assert made.status == 201, made.text
    assert made.headers["location"] == "http://localhost/atommq/feed=jobs/consumer=mailer"
    assert made.text == ids[0] + "\n" and made.headers["etag"] == f'"{ids[0][9:]}"'
    moved = put(client, "jobs", "mailer", ids[1][9:])  # the bare uuid does too
    assert moved.status == 200 and moved.text == ids[1] + "\n"
    read = client.get("/feed=jobs/consumer=mailer")
    assert (read.status, read.text, read.headers["etag"]) == (200, ids[1] + "\n", f'"{ids[1][9:]}"')
    assert client.get("/feed=jobs/consumer=mailer", If_None_Match=read.headers["etag"]).status == 304
    # What a consumer does with it: read on after it.
    assert client.get(f"/feed=jobs?start_after={read.text.strip()}").ids() == ids[2:]
    now = lag(client, "jobs", "mailer")
    assert (now["feed"], now["name"], now["last"], now["behind"], now["missed"]) == (
        "jobs",
        "mailer",
        ids[1],
        1,
        0,
    )
    # Backwards, unconditionally: a deliberate replay.
    assert put(client, "jobs", "mailer", ids[0]).status == 200
    assert lag(client, "jobs", "mailer")["behind"] == 2
    assert client.request("DELETE", "/feed=jobs/consumer=mailer").status == 204
    assert client.get("/feed=jobs/consumer=mailer").status == 404
    assert client.request("DELETE", "/feed=jobs/consumer=mailer").status == 404


def test_if_match_and_if_none_match_keep_two_consumers_of_one_name_from_moving_it_back(client):
    ids = publish_many(client, "jobs", 3)
    assert put(client, "jobs", "mailer", ids[0], If_None_Match="*").status == 201
    again = put(client, "jobs", "mailer", ids[0], If_None_Match="*")
    assert again.status == 412 and f"is at '{ids[0]}'" in again.text, again.text
    assert put(client, "jobs", "mailer", ids[1], If_Match=f'"{ids[0][9:]}"').status == 200
    stale = put(client, "jobs", "mailer", ids[1], If_Match=f'"{ids[0][9:]}"')  # a second run, behind
    assert stale.status == 412 and "another consumer of that name moved it" in stale.text
    assert client.get("/feed=jobs/consumer=mailer").text == ids[1] + "\n"  # not moved
    assert put(client, "jobs", "nobody", ids[0], If_Match="*").status == 412
    assert put(client, "jobs", "mailer", ids[2], If_Match="*").status == 200
    assert put(client, "jobs", "mailer", ids[2], If_Match="W/x").status == 400


def test_a_consumer_is_set_only_at_a_message_its_feed_has_or_had(client):
    ids = publish_many(client, "jobs", 2)
    others = publish_many(client, "other", 1)
    for body, status, says in (
        (others[0], 400, "has no message with id"),
        ("urn:uuid:00000000-0000-4000-8000-000000000000", 400, "has no message with id"),
        ("", 400, "PUT the id of the last message"),
    ):
        response = put(client, "jobs", "mailer", body)
        assert response.status == status and says in response.text, response.text
    assert put(client, "missing", "mailer", ids[0]).status == 404
    assert put(client, "jobs", ".bad", ids[0]).status == 400
    remove_oldest(client, "jobs", 1)  # processed, then removed by retention before it said so
    assert put(client, "jobs", "mailer", ids[0]).status == 201
    assert lag(client, "jobs", "mailer")["missed"] == 0


@pytest.mark.parametrize("transport", ["wsgi", "wsgi@postgresql", "wsgi@mariadb"])
def test_consumers_of_one_name_racing_never_move_it_backwards(client):
    """Eight runs of one consumer, each reading where it is and moving it one message on with
    If-Match: every move that succeeds is one step from where the last left it."""
    ids = publish_many(client, "jobs", 41)
    assert put(client, "jobs", "racer", ids[0]).status == 201
    moved, refused, errors = [], [], []

    def run() -> None:
        for _ in range(15):
            here = client.get("/feed=jobs/consumer=racer")
            position = ids.index(here.text.strip())
            if position == len(ids) - 1:
                return
            answer = put(client, "jobs", "racer", ids[position + 1], If_Match=here.headers["etag"])
            if answer.status == 200:
                moved.append(position + 1)
            elif answer.status == 412:
                refused.append(position + 1)
            else:
                errors.append(answer.text)

    runs = [threading.Thread(target=run) for _ in range(8)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join()
    assert not errors
    # Each position was reached by exactly one run: no step taken twice, none backwards.
    assert sorted(moved) == list(range(1, len(moved) + 1)), moved
    assert client.get("/feed=jobs/consumer=racer").text.strip() == ids[len(moved)]
    assert refused, "no race happened: the test proved nothing"


def test_lag_in_the_service_document_and_its_json(client):
    ids = publish_many(client, "jobs", 10)
    publish_many(client, "quiet", 1)
    put(client, "jobs", "slow", ids[3])
    put(client, "jobs", "fast", ids[9])
    time.sleep(0.3)
    service = client.get("/").xml()
    found = {c.get("name"): c for c in service.iter(f"{{{AMQ}}}consumer")}
    assert set(found) == {"slow", "fast"}
    assert found["slow"].getparent().get("href").endswith("/feed=jobs")
    assert (found["slow"].get("last"), found["slow"].get("behind"), found["slow"].get("missed")) == (
        ids[3],
        "6",
        "0",
    )
    assert float(found["slow"].get("behind_seconds")) >= 0.3
    assert (found["fast"].get("behind"), found["fast"].get("behind_seconds")) == ("0", "0.000")
    feeds = {f["name"]: f for f in json.loads(client.get("/?format=json").body)["feeds"]}
    assert feeds["quiet"]["consumers"] == []
    slow = next(c for c in feeds["jobs"]["consumers"] if c["name"] == "slow")
    assert (slow["behind"], slow["missed"]) == (6, 0) and slow["behind_seconds"] >= 0.3
    # Messages removed before the slow consumer read them: missed, and the age is the oldest held's.
    remove_oldest(client, "jobs", 6)
    slow = lag(client, "jobs", "slow")
    assert (slow["behind"], slow["missed"]) == (6, 2)
    assert etree.tostring(client.get("/").xml()).count(b"amq:consumer") == 2


def test_keep_unread_holds_what_a_named_consumer_has_not_read_up_to_the_hard_limit(client):
    ids = publish_many(client, "jobs", 10)
    rules = "jobs = 2 messages, keep unread up to 6 messages"
    put(client, "jobs", "slow", ids[2])  # has read 3 of 10
    # The rule alone keeps 2; the slow consumer's unread 7 are kept up to 6 newest: 4 go, one unread.
    assert prune(client, rules).startswith(
        "jobs: removed 4 (keeps 2 messages, keep unread up to 6 messages)\nremoved 4 messages in all\n"
    )
    assert client.whole_feed("jobs") == ids[4:]
    gone = client.get(f"/feed=jobs?start_after={ids[2]}")
    assert gone.status == 410 and "1 message after it went with them unread" in gone.text
    assert lag(client, "jobs", "slow")["missed"] == 1
    put(client, "jobs", "slow", ids[8])  # caught up: the rule alone decides again
    prune(client, rules)
    assert client.whole_feed("jobs") == ids[8:]
    client.request("DELETE", "/feed=jobs/consumer=slow")
    publish_many(client, "jobs", 1)
    prune(client, rules)
    assert len(client.whole_feed("jobs")) == 2


def test_keep_unread_rules_are_checked_at_start_up(tmp_path):
    from atommq import config
    from atommq.errors import ConfigError

    ini = tmp_path / "atommq.ini"
    for rule, says in (
        ("jobs = 1 day, keep unread up to 1 hour", "keep unread's age must be above the rule's"),
        ("jobs = keep unread up to 3 days", "no limit"),
        ("jobs = 1 day, keep unread up to 3 days, 2 days", "is not a limit"),
    ):
        ini.write_text(f"[atommq]\n[retention]\n{rule}\n")
        with pytest.raises(ConfigError, match=says):
            config.load({"ATOMMQ_CONFIG": str(ini)})
    ini.write_text("[atommq]\n[retention]\njobs = 1 day, keep unread up to 30 days, 1000000 messages\n")
    limits = config.load({"ATOMMQ_CONFIG": str(ini)}).retention[0][1]
    assert (limits.max_age, limits.unread_age, limits.unread_messages) == (86400, 30 * 86400, 1000000)


ADMIN_RULES = """
[admin]
* = root

[publish]
* = cron

[read]
* = @anyone
"""


@pytest.fixture
def administered(make_client, tmp_path):
    PASSWORDS.setdefault("root", "root-secret-1")
    return with_rules(make_client, tmp_path, ADMIN_RULES, ("cron", "alice", "root"))


def root() -> dict[str, str]:
    return login("root")


def test_delete_a_feed_is_for_admins_only_and_offered_only_where_someone_is(client, administered):
    client.publish("jobs", "x")
    refused = client.request("DELETE", "/feed=jobs")
    assert refused.status == 405 and refused.headers["allow"] == "GET, HEAD, POST"
    assert client.get("/feed=jobs").ids()
    administered.request("POST", "/feed=jobs", b"<entry><content>x</content></entry>", login("cron"))
    assert administered.request("DELETE", "/feed=jobs").status == 401
    assert administered.request("DELETE", "/feed=jobs", headers=login("cron")).status == 403
    done = administered.request("DELETE", "/feed=jobs", headers=root())
    assert done.status == 200 and done.text == "feed 'jobs' deleted, with its 1 message\n"
    assert administered.get("/feed=jobs").status == 404
    assert administered.request("DELETE", "/feed=jobs", headers=root()).status == 404


def test_a_deleted_feeds_name_is_a_new_feed_and_its_old_cursors_are_gone(client, administered):
    feed = administered
    cron = login("cron")
    old = [
        feed.request("POST", "/feed=jobs", f"<entry><content>{n}</content></entry>".encode(), cron)
        for n in range(3)
    ]
    old_ids = [r.xml().findtext("{http://www.w3.org/2005/Atom}id") for r in old]
    put(feed, "jobs", "mailer", old_ids[0], Authorization=cron["Authorization"])
    old_feed_id = feed.get("/feed=jobs").xml().findtext("{http://www.w3.org/2005/Atom}id")
    assert feed.request("DELETE", "/feed=jobs", headers=root()).status == 200
    new = feed.request("POST", "/feed=jobs", b"<entry><content>new</content></entry>", cron)
    assert new.status == 201
    page = feed.get("/feed=jobs")
    assert page.xml().findtext("{http://www.w3.org/2005/Atom}id") != old_feed_id
    assert page.ids() == [new.xml().findtext("{http://www.w3.org/2005/Atom}id")]
    gone = feed.get(f"/feed=jobs?start_after={old_ids[1]}")
    assert gone.status == 410 and "was deleted on" in gone.text and "read it from its start" in gone.text
    assert feed.get("/feed=jobs/consumer=mailer").status == 404  # its consumers went with it
    assert feed.get("/feed=jobs?start_after=urn:uuid:00000000-0000-4000-8000-000000000000").status == 400


def test_moving_a_consumer_needs_the_consume_right_or_else_publish(make_client, tmp_path):
    rules = "[publish]\n* = cron\n[read]\n* = alice cron\n"
    feed = with_rules(make_client, tmp_path, rules)
    made = feed.request("POST", "/feed=jobs", b"<entry><content>x</content></entry>", login("cron"))
    first = made.xml().findtext("{http://www.w3.org/2005/Atom}id")
    assert put(feed, "jobs", "c", first, **login("alice")).status == 403  # a reader may not
    assert put(feed, "jobs", "c", first).status == 401
    assert put(feed, "jobs", "c", first, **login("cron")).status == 201  # a publisher may
    assert feed.get("/feed=jobs/consumer=c", **login("alice")).status == 200  # a reader reads it
    feed = with_rules(make_client, tmp_path, rules + "[consume]\n* = alice\n", database_url=feed.database_url)
    assert put(feed, "jobs", "c", first, **login("alice")).status == 200
    assert put(feed, "jobs", "c", first, **login("cron")).status == 403


def atommq_feeds(client, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`atommq feeds ...` on the server, on the client's database."""
    env = {**os.environ, "ATOMMQ_DATABASE_URL": client.database_url}
    env.pop("ATOMMQ_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "atommq", "feeds", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_atommq_feeds_shows_each_feed_and_its_consumers_lag_and_deletes_one(client):
    assert atommq_feeds(client).stdout == "no feeds yet: a feed is made by its first message\n"
    ids = publish_many(client, "jobs", 5)
    publish_many(client, "alerts.disk", 1)
    put(client, "jobs", "mailer", ids[1])
    remove_oldest(client, "jobs", 3)  # the mailer missed one
    shown = atommq_feeds(client)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["FEED", "MESSAGES", "OLDEST", "NEWEST", "SIZE"]
    assert lines[1].split()[:2] == ["alerts.disk", "1"] and lines[2].split()[:2] == ["jobs", "2"]
    assert re.fullmatch(
        r"  consumer mailer: 3 behind, the oldest unread [0-9.]+ s old; missed 1 \(removed before it read them\)",
        lines[3],
    ), lines[3]
    listed = json.loads(atommq_feeds(client, "--json").stdout)["feeds"]
    jobs = next(feed for feed in listed if feed["name"] == "jobs")
    assert (jobs["messages"], jobs["consumers"][0]["behind"], jobs["consumers"][0]["missed"]) == (2, 3, 1)
    assert jobs["size"] > 2 * len("m0") and jobs["oldest"] <= jobs["newest"]
    # Deleting asks first, and without a terminal needs --yes.
    refused = atommq_feeds(client, "delete", "jobs")
    assert refused.returncode == 2 and "without --yes" in refused.stderr
    done = atommq_feeds(client, "delete", "jobs", "--yes")
    assert done.stdout == "feed 'jobs' deleted, with its 2 messages\n", done.stderr
    assert [feed["name"] for feed in json.loads(atommq_feeds(client, "--json").stdout)["feeds"]] == [
        "alerts.disk"
    ]
    missing = client.get("/feed=jobs")
    assert missing.status == 404 and "was deleted on" in missing.text
    assert atommq_feeds(client, "delete", "jobs", "--yes").returncode == 1


UNDER_LOAD = pytest.mark.parametrize("transport", ["fastcgi", "fastcgi@postgresql", "fastcgi@mariadb"])


@UNDER_LOAD
def test_keep_unread_under_load_keeps_a_slow_named_consumer_whole(make_client, tmp_path):
    """8 publishers, a slow named consumer that says where it is after each page, and prune
    looping with `50 messages, keep unread up to 100000 messages`: the consumer sees every
    message once, in order, never a 410; once it has caught up, the rule alone decides."""
    from atommq.retention import Limits

    client = make_client()
    first = client.publish("jobs", "first").xml().findtext("{http://www.w3.org/2005/Atom}id")
    assert put(client, "jobs", "slow", first).status == 201
    limits = Limits(max_messages=50, unread_messages=100000)
    refused: list[str] = []
    seen: list[str] = [first]

    def consumer(done) -> None:
        while True:
            finished = done.is_set()
            page = client.get(f"/feed=jobs?start_after={seen[-1]}")
            if page.status != 200:
                refused.append(f"consumer: {page.status} {page.text}")
                return
            was, ids = seen[-1], page.ids()
            seen.extend(ids)
            if ids:  # processed: say so, from where it was
                moved = put(client, "jobs", "slow", ids[-1], If_Match=f'"{was[9:]}"')
                if moved.status != 200:
                    refused.append(f"consumer: {moved.status} {moved.text}")
                    return
            elif finished:
                return
            time.sleep(0.2)

    refused += under_load(client, limits, consumer)
    assert not refused, refused[:3]
    assert len(seen) == len(set(seen)) == 321, "every message once"
    assert [i for i in client.whole_feed("jobs")] == seen[-50:], "caught up: the rule alone decides"


@UNDER_LOAD
def test_deleting_a_feed_while_it_is_published_to_loses_no_publish_sent_after_it(make_client, tmp_path):
    """8 publishers to a feed while an admin deletes it: no publish fails; each one sent after
    the delete is in the new feed; the old feed leaves nothing behind."""
    import sqlalchemy as sa

    from atommq import config
    from atommq.app import open_store

    client = make_client()
    client.publish("jobs", "first")
    answered: list[tuple[float, str]] = []
    refused: list[str] = []

    def publisher(n: int) -> None:
        for i in range(40):
            sent = time.monotonic()
            response = client.post("/feed=jobs", f"<entry><content>{n}.{i}</content></entry>")
            if response.status != 201:
                refused.append(f"{response.status} {response.text}")
            else:
                answered.append((sent, response.xml().findtext("{http://www.w3.org/2005/Atom}id")))

    store = open_store(config.load({"ATOMMQ_DATABASE_URL": client.database_url}))
    workers = [threading.Thread(target=publisher, args=(n,)) for n in range(8)]
    for thread in workers:
        thread.start()
    while len(answered) < 100 and any(thread.is_alive() for thread in workers):
        time.sleep(0.005)  # a third of the publishes before the delete, the rest during and after
    removed = store.delete_feed("jobs", datetime.datetime.now(datetime.UTC))
    deleted_at = time.monotonic()
    for thread in workers:
        thread.join(timeout=120)
    store.close()
    assert not refused, refused[:3]
    assert removed > 0, "the delete ran before any publish: the test proved nothing"
    kept = set(client.whole_feed("jobs"))
    after = {message_id for when, message_id in answered if when > deleted_at}
    assert after and after <= kept
    assert len(kept) + removed == len(answered) + 1, "every message is in the new feed or was deleted"
    engine = sa.create_engine(client.database_url)
    with engine.connect() as connection:
        orphans = connection.execute(
            sa.text("SELECT COUNT(*) FROM atommq_messages WHERE feed_pk NOT IN (SELECT pk FROM atommq_feeds)")
        ).scalar()
        feeds = connection.execute(sa.text("SELECT COUNT(*) FROM atommq_feeds WHERE name = 'jobs'")).scalar()
    engine.dispose()
    assert (orphans, feeds) == (0, 1)


@pytest.mark.http
def test_put_and_delete_reach_atommq_through_every_gateway_and_web_server(client):
    """The methods and headers a consumer's PUT needs (a body, If-Match, If-None-Match) and
    DELETE pass through each way of running AtomMQ as through the others."""
    ids = publish_many(client, "jobs", 2)
    made = put(client, "jobs", "mailer", ids[0], If_None_Match="*")
    assert (made.status, made.text) == (201, ids[0] + "\n"), made.text
    assert put(client, "jobs", "mailer", ids[1], If_Match=made.headers["etag"]).status == 200
    stale = put(client, "jobs", "mailer", ids[1], If_Match=made.headers["etag"])
    assert stale.status == 412 and "another consumer of that name moved it" in stale.text
    assert client.get("/feed=jobs/consumer=mailer").text == ids[1] + "\n"
    assert client.request("HEAD", "/feed=jobs/consumer=mailer").status == 200
    assert client.request("DELETE", "/feed=jobs/consumer=mailer").status == 204
    assert client.get("/feed=jobs/consumer=mailer").status == 404
    refused = client.request("DELETE", "/feed=jobs")
    assert refused.status == 405 and refused.headers["allow"] == "GET, HEAD, POST"
