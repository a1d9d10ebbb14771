"""Messages removed from a feed's start (retention) are told, never hidden: a cursor that named
one gets 410 Gone, saying how many messages went unread and where the feed now starts; a cursor
the feed never had stays a 400."""

import sqlalchemy as sa

from conftest import ATOM_NS


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
    # The newest removed message: nothing after it was missed, but it is gone.
    assert "0 messages after it" in client.get(f"/feed=jobs?start_after={ids[3]}").text
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
    ids = publish_many(client, "jobs", 2)
    remove_oldest(client, "jobs", 1)
    response = client.get(f"/feed=jobs?start_after={ids[0]}&wait=5")
    assert response.status == 410
