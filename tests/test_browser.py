"""What a person sees in a real browser: headless Chromium (tests/browser.py, through
chromedriver) on the pages that real lighttpd serves from deploy/lighttpd.conf, through FastCGI
and through CGI. The service page lists the feeds, a feed page pages through `next`, a message
published by another process appears on an open page, the publish form publishes for a user
who logged in and for no one else (nor for another site's page), a hostile corpus of messages
runs nothing and fetches nothing, and every page fits a phone and a wide screen. Screenshots of
the pages go to $ATOMMQ_ARTIFACTS/screenshots (default /tmp/atommq-artifacts); with
ATOMMQ_DOCS_SCREENSHOT=1 the feed page's is also written to docs/browser.png, for the README.

One Chromium (an empty profile, no login) serves the module; a test that logs in starts its own.
"""

import base64
import http.client
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from browser import Browser, Driver, missing
from test_access import PASSWORDS, atommq_users

import webservers
from conftest import ROOT, TRANSPORTS, _deployed_app, need

KINDS = [kind for kind in ("lighttpd-fastcgi", "lighttpd-cgi") if kind in TRANSPORTS]
EACH_WAY = pytest.mark.parametrize("kind", KINDS)
# What a test shows of a page's behaviour, which the gateway does not change.
ONE_WAY = pytest.mark.parametrize("kind", KINDS[:1])
# Feeds forms.* only alice may publish to; any other anyone may; anyone may read.
RULES = "[publish]\nforms.* = alice\n* = @anyone\n"
ARTIFACTS = Path(os.environ.get("ATOMMQ_ARTIFACTS", "/tmp/atommq-artifacts"))
PAGE_SIZE = 100  # a feed page's messages (app.HTML_PAGE_SIZE)
LONG_FEED = 2 * PAGE_SIZE + 1  # three pages
ALICE = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()


class Site:
    """lighttpd through FastCGI and through CGI, on one SQLite database with RULES and the
    users file: the CGI server uses the FastCGI one's database (publishing a feed of three
    pages through CGI, a Python started per message, would take most of a minute)."""

    def __init__(self) -> None:
        reason = webservers.missing()
        need(reason is None, str(reason))
        self.python, self.app = _deployed_app()
        self.folder = Path(tempfile.mkdtemp(prefix="amqbrowser", dir="/tmp"))
        self.folder.chmod(0o755)
        users = self.folder / "users"
        assert atommq_users("add", "alice", "--file", str(users), password=PASSWORDS["alice"]).returncode == 0
        www = pwd.getpwnam(webservers.WWW_USER)
        os.chown(users, www.pw_uid, www.pw_gid)
        self.settings = {"ATOMMQ_USERS_FILE": str(users)}
        self.servers: dict[str, webservers.WebServer] = {}
        self.server("lighttpd-fastcgi")

    def server(self, kind: str) -> webservers.WebServer:
        if kind not in self.servers:
            settings = dict(self.settings)
            if self.servers:
                settings["ATOMMQ_DATABASE_URL"] = f"sqlite:///{self.servers['lighttpd-fastcgi'].db_path}"
            self.servers[kind] = webservers.WebServer(kind, self.python, self.app, settings, sections=RULES)
        return self.servers[kind]

    def url(self, kind: str) -> str:
        """AtomMQ's address through `kind`: http://127.0.0.1:PORT/atommq"""
        return self.server(kind).url

    def publish(
        self, kind: str, feed: str, body: str | bytes, content_type: str = "text/plain", login: str = ""
    ) -> str:
        """Publish as a program does (no browser); the message's uuid."""
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": content_type, **({"Authorization": login} if login else {})}
        status, answer, text = request(self.server(kind).port, "POST", f"/atommq/feed={feed}", data, headers)
        assert status == 201, text
        return answer["location"].rpartition("/entry=")[2]

    def stored(self, feed: str) -> list[str]:
        """The contents of a feed's messages, oldest first, read over HTTP as a program does."""
        port = self.server("lighttpd-fastcgi").port
        status, _, text = request(port, "GET", f"/atommq/feed={feed}?format=json")
        assert status == 200, text
        return [item.get("content_text", item.get("content_html")) for item in json.loads(text)["items"]]

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def request(
    port: int, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, target, body or None, headers or {})
        answer = connection.getresponse()
        text = answer.read().decode("utf-8", "replace")
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, text
    finally:
        connection.close()


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    reason = missing()
    need(reason is None, str(reason))
    with Driver() as started:
        yield started


@pytest.fixture(scope="module")
def reader(driver: Driver) -> Iterator[Browser]:
    """A person's browser, not logged in, shared by the module's tests."""
    with driver.session() as browser:
        yield browser


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with closing(Site()) as started:
        yield started


@pytest.fixture(scope="module")
def long_feed(site: Site) -> list[str]:
    """Feed `paging`: three pages of messages m0 ... m200, published through FastCGI."""
    return [site.publish("lighttpd-fastcgi", "paging", f"m{n}") for n in range(LONG_FEED)]


def articles(browser: Browser) -> list[str]:
    """The ids (m-UUID) of the messages the page shows, in order."""
    script = "return Array.from(document.querySelectorAll('article.message'), a => a.id)"
    return list(browser.run(script))


# 1. The service page and paging


@EACH_WAY
def test_the_service_page_lists_the_feeds_and_a_feed_page_pages_through_next_to_the_end(
    kind: str, site: Site, long_feed: list[str], reader: Browser
) -> None:
    site.publish(kind, f"other.{kind}", "hello")
    url = site.url(kind)
    reader.get(url + "/")
    assert reader.find("h1").text == "AtomMQ"
    links = {a.text: a.attribute("href") for a in reader.find_all("table.feeds th a")}
    assert links["paging"] == f"{url}/feed=paging"
    assert links[f"other.{kind}"] == f"{url}/feed=other.{kind}"
    assert list(links) == sorted(links)  # "Feeds, by name"
    next(a for a in reader.find_all("table.feeds th a") if a.text == "paging").click()
    assert reader.find("h1").text == "paging" and reader.title == "paging · AtomMQ"
    shown, pages = [], 0
    while True:
        pages += 1
        shown += articles(reader)
        following = reader.find_all("a[rel=next]")
        if not following:
            break
        following[0].click()
    assert pages == 3 and shown == [f"m-{uuid}" for uuid in long_feed]
    assert reader.find("article.message:last-of-type pre").text == f"m{LONG_FEED - 1}"
    # The last page links the newest messages; its script follows the feed, so no reload link.
    assert reader.find("nav.pages a").text == "Newest"
    reader.wait(lambda: not reader.find("a.reload").displayed(), what="the reload link hidden")
    reader.find("nav.pages a").click()
    assert articles(reader) == [f"m-{uuid}" for uuid in long_feed[-PAGE_SIZE:]]


# 2. Live messages


@EACH_WAY
def test_a_message_published_by_another_process_appears_on_an_open_feed_page(
    kind: str, site: Site, reader: Browser
) -> None:
    feed = f"live.{kind}"
    first = site.publish(kind, feed, "already here")
    reader.get(f"{site.url(kind)}/feed={feed}")
    assert articles(reader) == [f"m-{first}"]
    reader.run("window.notReloaded = true")
    published = subprocess.run(
        [
            sys.executable,
            "-m",
            "atommq",
            "publish",
            f"{site.url(kind)}/feed={feed}",
            "--text",
            "disk 91% full on web-2",
            "--title",
            "cron on web-2",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert published.returncode == 0, published.stderr
    uuid = published.stdout.strip().removeprefix("urn:uuid:")
    article = reader.wait(lambda: reader.find(f"#m-{uuid}"), what="the new message")
    assert article.find("h2").text == "cron on web-2"
    assert article.find("pre").text == "disk 91% full on web-2"
    assert reader.wait(lambda: reader.find(".status").text == "1 new message.", what="the status line")
    assert articles(reader) == [f"m-{first}", f"m-{uuid}"]
    assert reader.run("return window.notReloaded") is True
