"""What a person sees in a real browser: headless Chromium (tests/browser.py, through
chromedriver) on the pages that real lighttpd serves from deploy/lighttpd.conf, through FastCGI
and through CGI. The service page lists the feeds, a feed page pages through `next`, a message
published by another process appears on an open page (with scripts off, a reload link shows
it), the publish form publishes for a user who logged in and for no one else (nor for another
site's page), a hostile corpus of messages runs nothing, fetches nothing and connects nowhere,
and every page fits a phone and a wide screen. Screenshots of
the pages go to $ATOMMQ_ARTIFACTS/screenshots (default /tmp/atommq-artifacts); with
ATOMMQ_DOCS_SCREENSHOT=1 the feed page's is also written to docs/browser.png, for the README.

One Chromium (an empty profile, no login) serves the module; a test that logs in, or turns
scripts off, starts its own.
"""

import base64
import html
import http.client
import json
import os
import pwd
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from browser import Browser, Driver, missing
from lxml import etree
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
EXCERPT = 2000  # the most characters of a message a feed page shows (html.EXCERPT)
LONG_FEED = 2 * PAGE_SIZE + 1  # three pages
S = TypeVar("S", bound=socketserver.BaseServer)
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


ATOM = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml;type=entry"


def atom_entry(title: str, content: str, kind: str = "text", title_kind: str = "text", **more: str) -> bytes:
    """An Atom entry; `content` of kind xhtml or an XML media type is XML, put in as elements;
    `more`: its author (a name) and summary."""
    document = etree.Element(f"{{{ATOM}}}entry")
    etree.SubElement(document, f"{{{ATOM}}}title", type=title_kind).text = title
    if "author" in more:
        author = etree.SubElement(document, f"{{{ATOM}}}author")
        etree.SubElement(author, f"{{{ATOM}}}name").text = more["author"]
    if "summary" in more:
        etree.SubElement(document, f"{{{ATOM}}}summary").text = more["summary"]
    element = etree.SubElement(document, f"{{{ATOM}}}content", type=kind)
    if kind == "xhtml" or kind.endswith("+xml"):
        element.append(etree.fromstring(content))
    else:
        element.text = content
    return bytes(etree.tostring(document))


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
    assert pages == 3 and shown == [f"m-{m}" for m in long_feed]
    assert reader.find("article.message:last-of-type pre").text == f"m{LONG_FEED - 1}"
    # The last page links the newest messages; its script follows the feed, so no reload link.
    assert reader.find("nav.pages a").text == "Newest"
    reader.wait(lambda: not reader.find(".reload a").displayed(), what="the reload link hidden")
    reader.find("nav.pages a").click()
    assert articles(reader) == [f"m-{m}" for m in long_feed[-PAGE_SIZE:]]


# 2. Live messages


def open_new_feed(browser: Browser, site: Site, kind: str, name: str) -> tuple[str, str]:
    """Feed NAME.KIND made by a first message, and its page opened: its name, and the first's
    uuid."""
    feed = f"{name}.{kind}"
    first = site.publish(kind, feed, "already here")
    browser.get(f"{site.url(kind)}/feed={feed}")
    assert articles(browser) == [f"m-{first}"]
    return feed, first


@EACH_WAY
def test_a_message_published_by_another_process_appears_on_an_open_feed_page(
    kind: str, site: Site, reader: Browser
) -> None:
    feed, first = open_new_feed(reader, site, kind, "live")
    reader.run("window.notReloaded = true")

    def publish(*arguments: str) -> str:
        published = subprocess.run(
            [sys.executable, "-m", "atommq", "publish", f"{site.url(kind)}/feed={feed}", *arguments],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert published.returncode == 0, published.stderr
        return published.stdout.strip().removeprefix("urn:uuid:")

    message = publish("--text", "disk 91% full on web-2", "--title", "cron on web-2")
    article = reader.wait(lambda: reader.find(f"#m-{message}"), what="the new message")
    assert article.find("h2").text == "cron on web-2"
    assert article.find("pre").text == "disk 91% full on web-2"
    assert reader.wait(lambda: reader.find(".status").text == "1 new message.", what="the status line")
    assert articles(reader) == [f"m-{first}", f"m-{message}"]
    untitled = publish("--text", '{"disk": 92}', "--type", "application/json")
    reader.wait(lambda: reader.find(f"#m-{untitled}"), what="the second message")
    assert reader.run("return window.notReloaded") is True
    # What the script built is what the server renders once the page is reloaded, node for node.
    shown = [reader.find(f"#m-{m}").text for m in (first, message, untitled)]
    assert "application/json" in shown[2] and '{"disk": 92}' in shown[2]
    markup = "return [...document.querySelectorAll('article')].map(a => a.innerHTML)"
    built = reader.run(markup)
    reader.get(reader.url)
    assert reader.run("return window.notReloaded") is None
    assert [reader.find(f"#m-{m}").text for m in (first, message, untitled)] == shown
    assert reader.run(markup) == built


@ONE_WAY
def test_with_scripts_off_a_feed_page_offers_a_reload_link_that_shows_new_messages(
    kind: str, site: Site, driver: Driver
) -> None:
    with driver.session() as browser:
        browser.cdp("Emulation.setScriptExecutionDisabled", value=True)
        feed, first = open_new_feed(browser, site, kind, "noscript")
        reload = browser.find(".reload a")
        assert reload.displayed() and reload.text == "Check for new messages"
        later = site.publish(kind, feed, "published after the page was opened")
        time.sleep(0.3)
        assert articles(browser) == [f"m-{first}"]  # no script: nothing comes by itself
        reload.click()
        assert articles(browser) == [f"m-{first}", f"m-{later}"]


# 3. The publish form: with a login, and without


def with_login(url: str) -> str:
    """`url` with alice's name and password in it: how a headless Chromium, which has no login
    prompt, answers the 401 that asks it to log in (as a person types them into the prompt)."""
    return url.replace("http://", f"http://alice:{quote(PASSWORDS['alice'])}@", 1)


def alices_feed(site: Site, kind: str, name: str) -> tuple[str, str]:
    """Feed forms.NAME.KIND, which only alice may publish to, made by her first message (a
    feed has no page before it); its name and URL."""
    feed = f"forms.{name}.{kind}"
    site.publish(kind, feed, "the first", login=ALICE)
    return feed, f"{site.url(kind)}/feed={feed}"


def log_in(browser: Browser, login_url: str, feed_url: str) -> None:
    """Log in as alice at the feed page's login link, and be sent back to the feed page."""
    browser.get(with_login(login_url))
    browser.wait(lambda: browser.url == feed_url, what="sent back to the feed page")
    assert browser.find_all("p.login") == []


def publish_with_form(browser: Browser, feed_url: str, title: str, content: str, kind: str = "text") -> str:
    """Fill in the page's form and send it; the uuid of the message it published, from the
    feed page the browser is sent back to (?last=100#m-UUID)."""
    before = browser.url
    browser.find("form.publish input[name=title]").type(title)
    browser.find("form.publish textarea[name=content]").type(content)
    browser.find(f"form.publish input[name=kind][value={kind}]").click()
    browser.find("form.publish button[type=submit]").click()
    expected = f"{feed_url}?last={PAGE_SIZE}#m-"
    browser.wait(
        lambda: browser.url != before and browser.url.startswith(expected), what=f"the feed page {expected}"
    )
    return browser.url.rpartition("#m-")[2]


@EACH_WAY
def test_the_login_link_logs_the_browser_in_and_the_feed_pages_form_publishes(
    kind: str, site: Site, driver: Driver
) -> None:
    feed, feed_url = alices_feed(site, kind, "login")
    login_url = f"{site.url(kind)}/login?feed={feed}"
    entry = f"<entry xmlns='{ATOM}'><title>an entry</title><content>in XML</content></entry>"
    with driver.session() as browser:
        browser.get(feed_url)
        assert browser.find_all("form.publish") == []
        link = browser.find("p.login a")
        assert link.text == "Log in to publish" and link.attribute("href") == login_url
        browser.log("browser")
        link.click()  # asks for a login (401): a headless browser has no prompt, shows an empty page
        browser.wait(lambda: browser.url == login_url, what="the login link followed")
        assert browser.find_all("form.publish") == []
        refusals = [e["message"] for e in browser.log("browser") if "status of 401" in e["message"]]
        assert refusals, "no 401 asked the browser to log in"
        log_in(browser, login_url, feed_url)
        message = publish_with_form(browser, feed_url, "from the form", "typed by alice\nin two lines")
        article = browser.find(f"#m-{message}")
        assert article.find("h2").text == "from the form"
        assert article.find("pre").text == "typed by alice\nin two lines"
        # Still logged in: the page offers a new form; an Atom entry this time.
        assert browser.find("form.publish textarea").property("value") == ""
        message = publish_with_form(browser, feed_url, "", entry, kind="atom")
        article = browser.find(f"#m-{message}")
        assert article.find("h2").text == "an entry" and article.find("pre").text == "in XML"
    assert site.stored(feed) == ["the first", "typed by alice\nin two lines", "in XML"]


class Forger(ThreadingHTTPServer):
    """Another site's page that makes a visitor's browser publish to `?target=`: a fetch() with
    the browser's credentials, then an auto-submitted form."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ForgedPage)
        self.port = self.server_address[1]


class _ForgedPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if not self.path.startswith("/prize?"):
            self.send_error(404)
            return
        target = html.escape(parse_qs(urlsplit(self.path).query)["target"][0])
        page = f"""<!DOCTYPE html><title>You won</title>
<form method="post" action="{target}"><input name="key" value="{uuid.uuid4()}">
<input name="kind" value="text"><input name="title" value="forged">
<textarea name="content">forged by a form</textarea></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
  body: new URLSearchParams({{key: "{uuid.uuid4()}", kind: "text", content: "forged by fetch"}})}})
  .finally(() => document.forms[0].submit());
</script>"""
        data = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def serving(server: S) -> Iterator[S]:
    """`server` answering, in a thread, until the fixture that yields from this ends."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with server:
        yield server
        server.shutdown()


@pytest.fixture(scope="module")
def forger() -> Iterator[Forger]:
    yield from serving(Forger())


@EACH_WAY
def test_a_page_of_another_site_cannot_make_a_logged_in_browser_publish(
    kind: str, site: Site, driver: Driver, forger: Forger
) -> None:
    feed, feed_url = alices_feed(site, kind, "forged")
    target = quote(f"{feed_url}/form", safe="")
    with driver.session() as browser:
        log_in(browser, f"{site.url(kind)}/login?feed={feed}", feed_url)
        browser.log("performance")
        # Another site (localhost is not 127.0.0.1), and the same site on another port.
        for origin in (f"http://localhost:{forger.port}", f"http://127.0.0.1:{forger.port}"):
            browser.get(f"{origin}/prize?target={target}")
            browser.wait(lambda: browser.url == f"{feed_url}/form", what="the forged form sent")
            refusal = browser.find("body").text
            assert refusal.startswith("refused: this POST was sent by a page of another site"), refusal
        forged = [r for r in browser.requests() if r.method == "POST"]
    assert [(r.url, r.headers.get("sec-fetch-site"), r.status) for r in forged] == [
        (f"{feed_url}/form", where, 403) for where in ("cross-site", "cross-site", "same-site", "same-site")
    ]
    # The browser sent its login with the forged form: only the refusal kept it from publishing.
    assert any(r.headers.get("authorization") == ALICE for r in forged)
    assert site.stored(feed) == ["the first"]


# 4. The hostile corpus


CONNECTED = "a connection, no request on it"  # a preconnect sends nothing


class Listener(socketserver.ThreadingTCPServer):
    """A port of 127.0.0.1 (not AtomMQ's origin) that every payload of the corpus would reach
    if it ran or loaded anything: each connection is kept, with its request line."""

    daemon_threads = True

    def __init__(self) -> None:
        self.hits: list[str] = []
        super().__init__(("127.0.0.1", 0), _Hit)
        self.port = self.server_address[1]


class _Hit(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        hits: list[str] = self.server.hits  # type: ignore[attr-defined]
        hits.append(CONNECTED)
        index = len(hits) - 1
        self.request.settimeout(2)
        try:
            line = self.request.recv(4096).partition(b"\r\n")[0].decode("latin-1")
            hits[index] = line or hits[index]
            self.request.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        except OSError:
            pass


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A new port for each test: Chromium keeps connections it opened to one for a while."""
    yield from serving(Listener())


def corpus(port: int) -> list[tuple[str, bytes, str]]:
    """Hostile messages, as (what it is, body, Content-Type): each payload, should it run,
    fetches http://127.0.0.1:PORT/NAME and marks the page (its title, localStorage, a global);
    should it load anything, that is a request to the same port."""
    away = f"http://127.0.0.1:{port}"

    def run(name: str) -> str:
        return (
            f"fetch('{away}/{name}');top.pwned='{name}';document.title='pwned';"
            f"localStorage.setItem('pwned','{name}')"
        )

    tags = f"""<script>{run("script")}</script>
<img src="x" onerror="{run("onerror")}"><img src="{away}/img">
<a id="js-link" href="javascript:{run("javascript-link")}">a javascript: link</a>
<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20" onload="{run("svg-onload")}">
<script>{run("svg-script")}</script><image href="{away}/svg-image"/>
<animate onbegin="{run("svg-onbegin")}" attributeName="x" dur="1s"/>
<a href="javascript:{run("svg-link")}"><text x="0" y="15">svg link</text></a></svg>
<style>@import url("{away}/css-import"); body {{ background: url("{away}/css-url"); }}
p {{ width: expression({run("css-expression")}); }}
@font-face {{ font-family: far; src: url("{away}/css-font"); }} .far {{ font-family: far; }}</style>
<p class="far" style="background-image: url('{away}/style-attribute')">styled</p>
<link rel="stylesheet" href="{away}/link-stylesheet"><link rel="preconnect" href="{away}">
<link rel="prefetch" href="{away}/prefetch"><link rel="preload" href="{away}/preload" as="script">
<link rel="icon" href="{away}/icon"><meta http-equiv="refresh" content="0; url={away}/refresh">
<iframe src="{away}/iframe"></iframe><iframe srcdoc="<script>{run("srcdoc")}</script>"></iframe>
<iframe src="javascript:{run("iframe-javascript")}"></iframe>
<object data="{away}/object"></object><embed src="{away}/embed">
<video poster="{away}/poster" src="{away}/video" autoplay></video><audio src="{away}/audio" autoplay></audio>
<img srcset="{away}/srcset 1x"><picture><source srcset="{away}/source"><img src="data:,"></picture>
<input type="image" src="{away}/input-image" alt="x">
<form action="{away}/form" method="post"><input name="q" autofocus onfocus="{run("autofocus")}">
<button formaction="javascript:{run("formaction")}">send</button></form>
<details open ontoggle="{run("ontoggle")}"><summary>details</summary></details>
<table background="{away}/table-background"><tr><td>cell</td></tr></table>
<noscript><img src="{away}/noscript"></noscript>
<math><mtext><a href="javascript:{run("math-link")}">math link</a></mtext></math>
<div onmouseover="{run("mouseover")}">hover</div><marquee onstart="{run("marquee")}">m</marquee>
<base href="{away}/base/"><img src="after-base">"""
    xhtml = f"""<div xmlns="http://www.w3.org/1999/xhtml"><script>{run("xhtml-script")}</script>
<img src="x" alt="x" onerror="{run("xhtml-onerror")}"/>
<a id="js-link" href="javascript:{run("xhtml-javascript-link")}">a javascript: link</a>
<object data="{away}/xhtml-object"></object>
<style>body {{ background: url("{away}/xhtml-css-url") }}</style><iframe src="{away}/xhtml-iframe"></iframe>
<meta http-equiv="refresh" content="0; url={away}/xhtml-refresh"/><p>styled</p></div>"""
    svg = f"""<svg xmlns="http://www.w3.org/2000/svg" onload="{run("svg-type-onload")}">
<script>{run("svg-type-script")}</script><image href="{away}/svg-type-image"/></svg>"""
    closing = f'</title></head><script>{run("title-closes")}</script><img src=x onerror="{run("title-img")}">'

    return [
        ("text, posted as is", f"hostile text: {tags}".encode(), "text/plain"),
        (
            "a title that closes the tag",
            atom_entry(closing, f"</pre>{tags}", "text", author=closing, summary=tags),
            ATOM_TYPE,
        ),
        (
            "html",
            atom_entry(html.escape(f'<img src=x onerror="{run("html-title")}">'), tags, "html", "html"),
            ATOM_TYPE,
        ),
        ("xhtml", atom_entry("xhtml", xhtml, "xhtml"), ATOM_TYPE),
        ("text/html", atom_entry("text/html", tags, "text/html"), ATOM_TYPE),
        ("svg", atom_entry("svg", svg, "image/svg+xml"), ATOM_TYPE),
        ("html, posted as is", f"hostile html: {tags}".encode(), "text/html"),
        ("a cut inside a tag", ("A" * 1990 + tags).encode(), "text/plain"),
        ("binary", b"\x00\xff" + tags.encode(), "application/octet-stream"),
        ("html said to be an image", b"\x89PNG\r\n" + tags.encode(), "image/png"),
    ]


MARKS = """let stored = null;
try { stored = localStorage.getItem('pwned'); } catch (error) { stored = 'no storage: ' + error.name; }
return [document.title, window.pwned === undefined ? null : window.pwned, stored];"""
# Elements that only a message could have put in a page of AtomMQ's.
FOREIGN = (
    "script:not([src$='/atommq.js']), img, svg, style, video, audio, object, embed, picture, input[type=image], "
    "iframe:not(.rendered), link:not([rel=stylesheet]):not([rel=alternate]):not([rel=icon]), meta[http-equiv], base:not(head base), "
    "[onerror], [onload], [onfocus], [ontoggle], [onmouseover], a[href^='javascript:']"
)


@ONE_WAY
def test_the_hostile_corpus_runs_nothing_and_fetches_nothing(
    kind: str, site: Site, reader: Browser, listener: Listener, tmp_path: Path
) -> None:
    feed, url = f"hostile.{kind}", site.url(kind)
    origin = url.removesuffix("/atommq")
    site.publish(kind, feed, "the hostile corpus follows")
    reader.get(f"{url}/feed={feed}")
    reader.requests()
    messages = corpus(listener.port)
    ids = [site.publish(kind, feed, body, content_type) for _, body, content_type in messages]
    # Put in the open page by its script, from the feed's JSON.
    reader.wait(lambda: len(articles(reader)) == len(messages) + 1, what="the corpus on the open page")
    checked = []

    def nothing_ran(title: str) -> None:
        assert reader.run(MARKS) == [title, None, None], reader.url
        assert reader.run(f"return document.querySelectorAll(`{FOREIGN}`).length") == 0, reader.url
        checked.append(reader.url)

    text, closing = messages[0][1].decode(), etree.fromstring(messages[1][1]).findtext(f"{{{ATOM}}}title")

    def shown_as_text(how: str) -> None:
        nothing_ran(f"{feed} · AtomMQ")
        assert reader.find(f"#m-{ids[0]} pre").text == text[:EXCERPT], how
        assert reader.find(f"#m-{ids[0]} .more a").text == f"{len(text) - EXCERPT} more characters"
        assert reader.find(f"#m-{ids[1]} h2").text == closing, how

    shown_as_text("put in by the script")
    reader.get(f"{url}/feed={feed}")
    shown_as_text("stored and sent as the page")
    reader.get(f"{url}/")
    nothing_ran("AtomMQ")
    reader.cdp("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(tmp_path))
    for (what, body, _), message in zip(messages, ids, strict=True):
        entry = f"{url}/feed={feed}/entry={message}"
        reader.get(entry)
        heading = reader.find("h1").text
        nothing_ran(f"{heading} · {feed} · AtomMQ")
        downloads = reader.find_all("p.content.binary a[download]")
        if downloads:  # the bytes as published, saved, never shown
            downloads[0].click()
            saved = tmp_path / message  # its name from Content-Disposition; whole once there
            reader.wait(saved.exists, what=f"the download {saved}")
            assert saved.read_bytes() == body and reader.url == entry
            nothing_ran(f"{heading} · {feed} · AtomMQ")
        frames = reader.find_all("iframe.rendered")
        if frames:
            reader.frame(frames[0])
            assert reader.find("a#js-link").text == "a javascript: link", what  # markup, not its source
            for link in reader.find_all("a[href^='javascript:']"):
                link.click()
            reader.frame(None)
            nothing_ran(f"{heading} · {feed} · AtomMQ")
            reader.get(f"{entry}?format=rendered")  # the frame's document opened on its own
            assert reader.run(MARKS)[1:] == [None, "no storage: SecurityError"], what  # sandboxed
            checked.append(reader.url)
    time.sleep(0.5)  # for anything on its way
    assert listener.hits == []
    made = reader.requests()
    # Every request for anything but AtomMQ's own was refused by the policy (and never sent).
    elsewhere = [r for r in made if not r.url.startswith((f"{url}/", "data:", f"{origin}/favicon.ico"))]
    assert elsewhere and {(r.blocked, r.status) for r in elsewhere} == {("csp", None)}, elsewhere
    rendered = [u for u in checked if u.endswith("?format=rendered")]
    assert len(rendered) == 4 and len(checked) == 3 + len(messages) + 2 * len(rendered) + 2


@ONE_WAY
def test_an_xhtml_message_is_rendered_in_its_frame_as_its_markup(
    kind: str, site: Site, reader: Browser
) -> None:
    xhtml = "<div xmlns='http://www.w3.org/1999/xhtml'><p>plain <b></b>still plain</p><p>after</p></div>"
    message = site.publish(kind, f"xhtml.{kind}", atom_entry("t", xhtml, "xhtml"), ATOM_TYPE)
    reader.get(f"{site.url(kind)}/feed=xhtml.{kind}/entry={message}")
    reader.frame(reader.find("iframe.rendered"))
    try:
        bold = reader.run("return Array.from(document.querySelectorAll('b'), b => b.textContent)")
    finally:
        reader.frame(None)
    assert bold == [""]


# 5. Every page on a phone and a wide screen


SCREENS = ARTIFACTS / "screenshots"
# (width, height, a phone's): an iPhone 12 to 15's viewport, and a laptop's.
SCREEN_SIZES = ((390, 844, True), (1280, 900, False))
PNG = b"\x89PNG\r\n\x1a\n"


def png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(PNG), path
    return int.from_bytes(data[16:20], "big")  # the IHDR chunk's width


HEADING_LEVELS = "return [...document.querySelectorAll('h1, h2, h3, h4, h5, h6')].map(h => +h.tagName[1])"
# The lowest contrast between an element's own text and the background it is drawn on
# (WCAG 2 relative luminance), and where it is.
WORST_CONTRAST = """
function luminance(color) {
  const [r, g, b] = color.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(node) {
  for (; node; node = node.parentElement) {
    const parts = getComputedStyle(node).backgroundColor.match(/[\\d.]+/g);
    if (parts && (parts.length < 4 || Number(parts[3]) > 0)) return getComputedStyle(node).backgroundColor;
  }
  return "rgb(255, 255, 255)";
}
let worst = [99, ""];
for (const node of document.querySelectorAll("body *")) {
  const own = [...node.childNodes].some(child => child.nodeType === 3 && child.textContent.trim());
  const style = getComputedStyle(node);
  if (!own || style.display === "none" || style.visibility === "hidden") continue;
  const [a, b] = [luminance(style.color), luminance(background(node))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < worst[0]) worst = [ratio, node.tagName + "." + node.className];
}
return worst;
"""


@ONE_WAY
def test_every_page_fits_a_phone_and_a_wide_screen(kind: str, site: Site, reader: Browser) -> None:
    """Each page laid out at a phone's width and a wide one, its headings in order and its text
    of AA contrast. Saves each page's screenshot in ATOMMQ_ARTIFACTS/screenshots (PAGE-WIDTH.png); with
    ATOMMQ_DOCS_SCREENSHOT=1, the wide feed page's as docs/browser.png too."""
    feed, url = "deploys", site.url(kind)
    disk = atom_entry("cron on web-2", "disk 91% full on web-2 (/var: 18.2 of 20 GB)")
    first = site.publish(kind, feed, disk, ATOM_TYPE)
    backup = (
        '{"job":"nightly-backup","status":"done","bytes":48213342,"path":"/srv/backups/2026/12/03/db.sql.gz"}'
    )
    site.publish(kind, feed, backup, "application/json")
    deployed = (
        "<p>Deployed <b>v2.4.1</b>: 12 files, 3 migrations.</p><table><tr><th>host</th><th>status</th></tr>"
        "<tr><td>web-1</td><td>ok</td></tr><tr><td>web-2</td><td>ok</td></tr></table>"
    )
    entry = atom_entry("Deployed v2.4.1 to production", deployed, "html", author="deploy bot")
    message = site.publish(kind, feed, entry, ATOM_TYPE)
    status, _, text = request(
        site.server(kind).port, "PUT", f"/atommq/feed={feed}/consumer=mailer", f"urn:uuid:{first}".encode()
    )
    assert status in (200, 201), text
    pages = {
        "service": f"{url}/",
        "feed": f"{url}/feed={feed}",
        "message": f"{url}/feed={feed}/entry={message}",
        "form": f"{url}/feed={feed}/form",
    }
    try:
        for worker, (width, height, phone) in enumerate(SCREEN_SIZES, 1):
            reader.viewport(width, height, mobile=phone)
            for name, page in pages.items():
                reader.get(page)
                if name == "feed":  # a message arrives while the page is open
                    drained = atom_entry(f"worker-{worker}", "queue drained: 0 jobs waiting")
                    site.publish(kind, feed, drained, ATOM_TYPE)
                    reader.wait(lambda: reader.find(".status").text == "1 new message.", what="it")
                # Laid out at the screen's width (the page's viewport meta), none of it wider.
                assert reader.run("return window.innerWidth") == width, name
                assert reader.run("return document.documentElement.scrollWidth") <= width, name
                # Accessible: headings in order from one <h1>, text of WCAG AA contrast (4.5:1).
                levels = reader.run(HEADING_LEVELS)
                assert levels[0] == 1 and all(b - a <= 1 for a, b in zip(levels, levels[1:], strict=False)), (
                    name,
                    levels,
                )
                ratio, where = reader.run(WORST_CONTRAST)
                assert ratio >= 4.5, (name, width, where, ratio)
                shot = SCREENS / f"{name}-{width}.png"
                reader.screenshot(shot)
                assert png_width(shot) == width
    finally:
        reader.viewport(1280, 900)
    if os.environ.get("ATOMMQ_DOCS_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(SCREENS / "feed-1280.png", ROOT / "docs" / "browser.png")
