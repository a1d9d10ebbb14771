"""Long polling: a feed GET that asks to wait (?wait=N, Prefer: wait=N) and finds no message is
answered when one arrives, from whichever process or web server it was published through, or
after N seconds as it would have been at once (atommq/waiting.py)."""

import threading
import time

import pytest

import webservers
from conftest import ATOM_NS, Client


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


@pytest.mark.parametrize("transport", ["wsgi", "cgi"])
def test_beyond_max_waiters_a_request_is_answered_at_once(make_client):
    """Counted over processes: under CGI, each request is one."""
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


@pytest.mark.parametrize("transport", ["fastcgi", *webservers.KINDS])
def test_a_consumer_that_goes_away_while_waiting_frees_its_place_within_the_wait(make_client):
    """It holds its place (max_waiters; under CGI and mod_fcgid, a process) until its wait ends,
    no longer; nobody else waits for it meanwhile, and its going is not logged as an error."""
    client = make_client(max_waiters="1")
    last = message_id(client.publish("jobs", "a"))
    url = f"/feed=jobs?start_after={last}"
    started = time.monotonic()
    client.leave(f"{url}&wait=2", after=0.3)
    assert client.get(url).status == 200 and client.publish("jobs", "b").status == 201
    time.sleep(max(0.0, started + 3 - time.monotonic()))
    third = message_id(client.publish("jobs", "c"))
    waiting = in_background(lambda: client.get(f"/feed=jobs?start_after={third}", Prefer="wait=5"))
    time.sleep(0.5)
    fourth = message_id(client.publish("jobs", "d"))
    response, _ = waiting()
    assert response.headers.get("preference-applied") == "wait=5" and response.ids() == [fourth]
    logs = client.log + (client.web_server.error_log() if client.kind != "fastcgi" else "")
    if client.kind == "fastcgi":
        logs += (
            (client.tmp / "fcgi-stderr.log").read_text() if (client.tmp / "fcgi-stderr.log").exists() else ""
        )
    assert "Traceback" not in logs and "ERROR" not in logs, logs


def test_the_longest_wait_is_answered_through_every_web_server(tmp_path):
    """A request that waits max_wait's default (25 s) and gets nothing is answered, through each
    deploy way in deploy/, not cut off by a web server's timeout (mod_fcgid's I/O timeout is
    40 s, say). All at once, to take 25 s, not 25 s a server."""
    from atommq.config import Config

    longest = Config().max_wait
    clients = []
    for kind in webservers.KINDS:
        (tmp_path / kind).mkdir()
        clients.append(Client(kind, tmp_path / kind))
    try:
        lasts = [message_id(client.publish("jobs", "a")) for client in clients]
        started = time.monotonic()
        answers = [
            in_background(lambda c=client, last=last: c.get(f"/feed=jobs?start_after={last}&wait={longest}"))
            for client, last in zip(clients, lasts, strict=True)
        ]
        for client, answer in zip(clients, answers, strict=True):
            response, answered = answer()
            assert (response.status, response.ids()) == (200, []), (
                client.kind,
                response.status,
                response.text,
            )
            assert answered - started >= longest - 0.5, client.kind
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("transport", ["lighttpd-fastcgi", "apache-fcgid"])
def test_consumers_waiting_beyond_what_the_server_holds_never_starve_publishers(client):
    """Six consumers wait. Through lighttpd all six wait (threads are added for them); through
    mod_fcgid, whose processes serve one request each, the sample lets 2 wait (max_waiters)
    and answers the others at once, so that its processes stay free for publishers (without
    that setting, this publish waits 10 s)."""
    last = message_id(client.publish("jobs", "a"))
    url = f"/feed=jobs?start_after={last}"
    consumers = [in_background(lambda: client.get(url, Prefer="wait=10")) for _ in range(6)]
    time.sleep(1)
    started = time.monotonic()
    second = message_id(client.publish("jobs", "b"))
    assert client.get("/feed=jobs").status == 200
    assert time.monotonic() - started < 5, "a publish or a read waited behind the consumers"
    answers = [consumer()[0].ids() for consumer in consumers]
    if client.kind == "lighttpd-fastcgi":
        assert answers == [[second]] * 6
    else:  # at once, empty; or, those mod_fcgid queued while it started processes, with it
        assert all(ids in ([], [second]) for ids in answers), answers
