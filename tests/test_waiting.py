"""Long polling: a feed GET that asks to wait (?wait=N, Prefer: wait=N) and finds no message is
answered when one arrives, from whichever process or web server it was published through, or
after N seconds as it would have been at once (atommq/waiting.py)."""

import threading
import time

import pytest

from conftest import ATOM_NS


def message_id(response) -> str:
    return response.xml().findtext("a:id", namespaces=ATOM_NS)


def in_background(call):
    """Run `call` in a thread; returns a function that joins it and gives its result and the
    monotonic time it was answered."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append((call(), time.monotonic())))
    thread.start()

    def join():
        thread.join(timeout=60)
        assert result, "the waiting request was never answered"
        return result[0]

    return join


@pytest.mark.http
def test_a_waiting_get_is_answered_with_the_message_published_meanwhile(client):
    """Through the same server: under CGI, or a web server's other FastCGI process, it is another
    process that publishes (another web head: the last test)."""
    first = message_id(client.publish("jobs", "a"))
    answer = in_background(lambda: client.get(f"/feed=jobs?start_after={first}&wait=20"))
    time.sleep(0.5)
    second = message_id(client.publish("jobs", "b"))
    published = time.monotonic()
    response, answered = answer()
    assert response.status == 200 and response.ids() == [second]
    assert answered - published < 10, "answered at the end of the wait, not when the message came"


@pytest.mark.http
def test_prefer_wait_is_applied_and_a_wait_that_runs_out_answers_as_at_once(client):
    last = message_id(client.publish("jobs", "a"))
    url = f"/feed=jobs?start_after={last}"
    tag = client.get(url).headers["etag"]
    started = time.monotonic()
    response = client.get(url, Prefer="wait=1", If_None_Match=tag)
    assert time.monotonic() - started >= 0.9
    assert response.status == 304 and response.headers["preference-applied"] == "wait=1"
    empty = client.get(f"{url}&wait=1")
    assert empty.status == 200 and empty.ids() == [] and "preference-applied" not in empty.headers


@pytest.mark.http
def test_a_page_that_has_messages_is_answered_at_once_whatever_the_wait(client):
    first = message_id(client.publish("jobs", "a"))
    client.publish("jobs", "b")
    started = time.monotonic()
    response = client.get(f"/feed=jobs?start_after={first}&wait=20", Prefer="wait=20")
    assert time.monotonic() - started < 10
    assert len(response.ids()) == 1 and response.headers["preference-applied"] == "wait=20"


def test_what_cannot_wait_is_answered_at_once(client):
    client.publish("jobs", "a")
    started = time.monotonic()
    assert client.get("/feed=nothing?wait=20").status == 404
    assert (
        client.get("/feed=jobs?start_after=urn:uuid:00000000-0000-0000-0000-000000000000&wait=20").status
        == 400
    )
    assert time.monotonic() - started < 10
    bad = client.get("/feed=jobs?wait=soon")
    assert bad.status == 400 and "wait=20" in bad.text


def test_beyond_max_waiters_a_request_is_answered_at_once(make_client):
    client = make_client(max_waiters="1")
    last = message_id(client.publish("jobs", "a"))
    url = f"/feed=jobs?start_after={last}"
    waiting = in_background(lambda: client.get(url, Prefer="wait=3"))
    time.sleep(0.5)
    started = time.monotonic()
    second = client.get(url, Prefer="wait=3")
    assert time.monotonic() - started < 2.5 and "preference-applied" not in second.headers
    first, _ = waiting()
    assert first.headers["preference-applied"] == "wait=3"


def test_max_wait_caps_the_wait_and_0_turns_waiting_off(make_client):
    capped, off = make_client(max_wait="1"), make_client(max_wait="0")
    applied = []
    for client in (capped, off):
        last = message_id(client.publish("jobs", "a"))
        started = time.monotonic()
        response = client.get(f"/feed=jobs?start_after={last}", Prefer="wait=20")
        assert time.monotonic() - started < 10 and response.status == 200 and response.ids() == []
        applied.append(response.headers.get("preference-applied"))
    assert applied == ["wait=1", None]  # what was applied: the capped wait; nothing when off


@pytest.mark.parametrize(
    "transport", ["fastcgi", "fastcgi@postgresql", "fastcgi@mariadb", "lighttpd-fastcgi"]
)
def test_many_waiting_consumers_each_see_every_message_once_in_order(client, make_client):
    """10 consumers that wait in a loop after the last message they saw, while another web head
    (another process on the same database) publishes 20 messages: each sees all 20, in
    publishing order, none twice."""
    other = make_client(database_url=client.database_url)
    start = message_id(client.publish("jobs", "start"))
    other.get("/")
    seen: list[list[str]] = [[] for _ in range(10)]
    failures: list[str] = []

    def consume(number: int) -> None:
        cursor = start
        while len(seen[number]) < 20:
            try:
                response = client.get(f"/feed=jobs?start_after={cursor}&wait=10")
            except Exception as error:
                failures.append(repr(error))
                return
            if response.status != 200:
                failures.append(f"{response.status} {response.text}")
                return
            seen[number] += response.ids()
            cursor = seen[number][-1] if seen[number] else cursor

    consumers = [threading.Thread(target=consume, args=(n,)) for n in range(10)]
    for consumer in consumers:
        consumer.start()
    published = []
    for n in range(20):
        published.append(message_id(other.publish("jobs", f"m{n}")))
        time.sleep(0.02 * (n % 3))
    for consumer in consumers:
        consumer.join(timeout=120)
    assert not failures, (
        failures,
        [
            (c.tmp / "fcgi-stderr.log").read_text()
            for c in (client, other)
            if (c.tmp / "fcgi-stderr.log").exists()
        ],
    )
    assert all(ids == published for ids in seen), [len(ids) for ids in seen]
