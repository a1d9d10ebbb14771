"""What only a real web server can get wrong: body limits, the exact prefix, the host and port in
links, and where the app's errors are logged. Each test runs on every deployment way (the
behaviour suite runs on them all too, through the `client` fixture)."""

from http.client import HTTPConnection

import pytest

import webservers
from conftest import ATOM_NS, TRANSPORTS

WAYS = [kind for kind in webservers.KINDS if kind in TRANSPORTS]
LIMIT = 1024 * 1024  # the samples' body limit, and AtomMQ's default max_body_bytes
pytestmark = pytest.mark.parametrize("transport", WAYS)


def raw(client, method: str, path: str, body: bytes = b"", chunked: bool = False):
    """A request as a client on the network sends it: the real Host and port."""
    server = client._web()
    connection = HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        headers = {"Content-Type": "application/atom+xml"} if body else {}
        connection.request(
            method,
            path,
            body=iter([body]) if chunked else body or None,
            headers=headers,
            encode_chunked=chunked,
        )
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def entry_of(size: int) -> bytes:
    body = b"<entry><content>" + b"x" * (size - 34) + b"</content></entry>"
    assert len(body) == size
    return body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_of_exactly_the_limit_arrives_whole(client, chunked):
    status, headers, _ = raw(client, "POST", "/atommq/feed=big", entry_of(LIMIT), chunked)
    assert status == 201
    entry = client.get(headers["location"]).xml()
    assert len(entry.findtext("a:content", namespaces=ATOM_NS)) == LIMIT - 34


@pytest.mark.parametrize("size", [LIMIT + 1, 3 * LIMIT], ids=["just-over", "three-times"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_413_not_a_500_and_nothing_is_stored(client, size, chunked):
    if chunked and size > 2 * LIMIT and client.transport == "apache-fcgid":
        pytest.xfail("mod_fcgid answers 500 past FcgidMaxRequestLen (2 MiB); deploy/apache.conf says so")
    status, _, _ = raw(client, "POST", "/atommq/feed=big", entry_of(size), chunked)
    assert status == 413
    assert client.get("/feed=big").status == 404


def test_the_prefix_is_matched_exactly(client):
    client.publish("widgets", "x")
    for path in ("/atommqX", "/atommqX/feed=widgets", "/atommq-old/feed=widgets"):
        status, headers, body = raw(client, "GET", path)
        assert status in (403, 404), path
        assert b"feed" not in body and not headers.get("content-type", "").startswith("application/atom")


def test_links_carry_the_host_and_port_the_client_used(client):
    server = client._web()
    status, headers, _ = raw(client, "POST", "/atommq/feed=widgets", b"<entry><content>x</content></entry>")
    assert status == 201
    assert headers["location"].startswith(f"{server.url}/feed=widgets/entry=")
    status, _, body = raw(client, "GET", "/atommq/feed=widgets")
    assert f'href="{server.url}/feed=widgets"'.encode() in body


def test_the_apps_errors_reach_the_servers_error_log(make_client):
    client = make_client(log_file="")  # no log file: errors go where the web server logs
    server = client._web()
    server.db_path.write_bytes(b"this is not a SQLite database, it is garbage" * 100)
    response = client.get("/feed=widgets")
    assert response.status == 500
    assert b"Traceback" not in response.body
    assert "not a database" in server.error_log()


def test_the_authorization_header_reaches_the_app(make_client):
    """Apache hides it from CGI and FastCGI unless told (CGIPassAuth On, in every sample)."""
    client = make_client(log_level="DEBUG")
    server = client._web()
    connection = HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request("GET", "/atommq/", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    requests = [line for line in client.log.splitlines() if "GET '/' from" in line]
    assert requests and "Authorization" in requests[-1], client.log
    assert "YWxpY2U6c2VjcmV0" not in client.log  # names only, never credentials
