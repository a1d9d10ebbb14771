"""atommq.wsgi:application under real WSGI servers from PyPI, run as the README's one-line
commands run them (tests/wsgi_servers.py): the core of the behaviour suite through each, what a
bad setting does there, the mount at the root, and passenger_wsgi.py as Passenger loads it."""

import json
import subprocess
import sys
import threading
import time
from http.client import HTTPConnection

import pytest
from lxml import etree

import wsgi_servers
from conftest import ATOM_NS, ROOT, need

servers = pytest.mark.parametrize("transport", wsgi_servers.KINDS)


def message_id(response) -> str:
    return response.xml().findtext("a:id", namespaces=ATOM_NS)


@servers
def test_a_published_message_is_read_back_exactly(client):
    entry = "<entry><title>café λ</title><content type='html'>&lt;b&gt;€ 5&lt;/b&gt;</content></entry>"
    posted = client.post("/feed=jobs", entry, "application/atom+xml;type=entry")
    assert posted.status == 201
    assert posted.headers["location"].startswith("http://localhost/atommq/feed=jobs/entry=")
    for got in (client.get("/feed=jobs").entries()[0], client.get(posted.headers["location"]).xml()):
        assert got.findtext("a:id", namespaces=ATOM_NS) == message_id(posted)
        assert got.findtext("a:title", namespaces=ATOM_NS) == "café λ"
        content = got.find("a:content", ATOM_NS)
        assert content.get("type") == "html" and content.text == "<b>€ 5</b>"


@servers
def test_paging_follows_next_links_through_the_whole_feed(make_client):
    client = make_client(page_size="2")
    ids = [message_id(client.publish("jobs", str(n))) for n in range(5)]
    first = client.get("/feed=jobs")
    assert first.ids() == ids[:2]
    assert first.link("next").startswith("http://localhost/atommq/feed=jobs?")
    assert client.whole_feed("jobs") == ids


@servers
def test_if_none_match_is_304_without_a_body_until_a_new_message(client):
    client.publish("jobs", "a")
    tag = client.get("/feed=jobs").headers["etag"]
    again = client.get("/feed=jobs", If_None_Match=tag)
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == tag
    new = message_id(client.publish("jobs", "b"))
    fresh = client.get("/feed=jobs", If_None_Match=tag)
    assert fresh.status == 200 and fresh.ids()[-1] == new


@servers
def test_format_json_in_the_query_is_a_json_feed(client):
    client.publish("jobs", "a")
    response = client.get("/feed=jobs?format=json")
    assert response.status == 200 and response.headers["content-type"] == "application/feed+json"
    document = json.loads(response.body)
    assert document["feed_url"] == "http://localhost/atommq/feed=jobs?format=json"
    assert [item["content_text"] for item in document["items"]] == ["a"]


@servers
def test_an_error_is_one_line_of_plain_text(client):
    response = client.get("/feed=nothing-here")
    assert response.status == 404
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.count("\n") == 1 and "nothing-here" in response.text


@servers
@pytest.mark.parametrize("send_length", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_and_nothing_is_stored(make_client, send_length):
    client = make_client(max_body_bytes="1000")
    body = b"<entry><content>" + b"x" * 2000 + b"</content></entry>"
    headers = {"Content-Type": "application/atom+xml"}
    response = client.request("POST", "/feed=big", body, headers, send_length=send_length)
    assert response.status == 413 and "1000 bytes" in response.text
    assert client.get("/feed=big").status == 404


@servers
def test_a_chunked_body_is_read_to_its_end(client):
    """The servers decode the chunks and say where the input ends (wsgi.input_terminated)."""
    text = "x" * 100_000
    body = f"<entry><content>{text}</content></entry>".encode()
    headers = {"Content-Type": "application/atom+xml"}
    assert client.request("POST", "/feed=chunked", body, headers, send_length=False).status == 201
    assert client.get("/feed=chunked").entries()[0].findtext("a:content", namespaces=ATOM_NS) == text


@servers
def test_a_waiting_get_is_answered_when_a_message_is_published(client):
    first = message_id(client.publish("jobs", "a"))
    answers: list = []
    waiting = threading.Thread(
        target=lambda: answers.append(client.get(f"/feed=jobs?start_after={first}&wait=20"))
    )
    waiting.start()
    time.sleep(0.5)
    second = message_id(client.publish("jobs", "b"))
    published = time.monotonic()
    waiting.join(timeout=30)
    assert answers, "the waiting GET was never answered"
    assert time.monotonic() - published < 10, "answered at the end of the wait, not when the message came"
    assert answers[0].status == 200 and answers[0].ids() == [second]


@servers
def test_a_bad_setting_is_a_500_and_the_servers_log_names_it(make_client):
    """The app is built when the worker imports it: a bad setting must not kill the worker
    (with a traceback each time it is started again), but answer, and say why in the log."""
    client = make_client(page_size="lots")
    response = client.get("/feed=jobs")
    assert response.status == 500 and "lots" not in response.text
    log = client.web_server.stderr
    assert "AtomMQ: setting page_size: 'lots' is not a whole number" in log
    assert "Traceback" not in log


@servers
def test_mounted_at_the_root_links_have_no_prefix(transport, tmp_path):
    """The commands without a prefix (no SCRIPT_NAME, no --url-prefix): AtomMQ at the root."""
    need(wsgi_servers.missing(transport) is None, str(wsgi_servers.missing(transport)))
    env = {"ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path / 'atommq.db'}"}
    server = wsgi_servers.WSGIServer(transport, env, tmp_path, prefix="")
    try:
        connection = HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request(
            "POST", "/feed=jobs", b"hello", {"Host": "localhost", "Content-Type": "text/plain"}
        )
        posted = connection.getresponse()
        posted.read()
        assert posted.status == 201
        assert posted.getheader("Location").startswith("http://localhost/feed=jobs/entry=")
        connection.request("GET", "/", headers={"Host": "localhost"})
        service = etree.fromstring(connection.getresponse().read())
        collection = service.find("app:workspace/app:collection", ATOM_NS)
        assert collection.get("href") == "http://localhost/feed=jobs"
        connection.close()
    finally:
        server.stop()


def test_passenger_loads_application_from_passenger_wsgi_py(tmp_path):
    """As Passenger's loader does: the file by its path, from a process whose sys.path does not
    hold the repository (-I, another folder); `application` must answer."""
    load = (
        "import importlib.machinery, io, sys, wsgiref.util\n"
        "module = importlib.machinery.SourceFileLoader('passenger_wsgi', sys.argv[1]).load_module()\n"
        "environ = {}\n"
        "wsgiref.util.setup_testing_defaults(environ)\n"
        "environ.update(SCRIPT_NAME='/atommq', PATH_INFO='/feed=jobs', REQUEST_METHOD='POST',\n"
        "    CONTENT_TYPE='text/plain', CONTENT_LENGTH='5', **{'wsgi.input': io.BytesIO(b'hello')})\n"
        "body = b''.join(module.application(environ, lambda status, headers: print(status)))\n"
    )
    env = {"ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path / 'atommq.db'}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", load, str(ROOT / "passenger_wsgi.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == "201 Created\n", done.stderr
