"""Stock clients against the development server over real HTTP, as they really behave:
curl as cron jobs use it, Python's feedparser, and Perl's XML::Atom::Client and Atompub::Client."""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, need
from webservers import free_port

ENTRY = "<entry><title>allo</title><content>an important message</content></entry>"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """`python3 -m atommq serve` on a free port; yields the base URL http://127.0.0.1:PORT/atommq."""
    port = free_port()
    env = {**os.environ, "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db"}
    process = subprocess.Popen(
        [sys.executable, "-m", "atommq", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stderr=(tmp_path / "serve.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "serve.log").read_text()) from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/atommq"
    finally:
        process.terminate()
        process.wait(timeout=10)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    need(shutil.which("curl") is not None, "curl is not installed")
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=30)


def test_cron_job_publishes_with_curl_and_fails_loudly_on_error(server):
    done = curl("-f", "-d", ENTRY, f"{server}/feed=widgets")
    assert done.returncode == 0, done.stderr
    assert "an important message" in done.stdout
    bad = curl("-f", "-d", "<entry><content>oops</entry>", f"{server}/feed=widgets")
    assert bad.returncode == 22  # curl -f: HTTP error, so cron mails the failure
    body = curl("-d", "<entry><content>oops</entry>", f"{server}/feed=widgets")
    assert body.stdout.startswith("the body is not well-formed XML")
    assert curl("-f", f"{server}/feed=widgets").stdout.count("<entry>") == 1


def test_feedparser_reads_the_feed_and_polls_with_its_etag(server):
    need(
        importlib.util.find_spec("feedparser") is not None,
        "feedparser is not installed (requirements-dev.txt)",
    )
    import feedparser

    curl("-f", "-d", ENTRY, f"{server}/feed=widgets")
    parsed = feedparser.parse(f"{server}/feed=widgets")
    assert parsed.status == 200 and not parsed.bozo
    assert [e.title for e in parsed.entries] == ["allo"]
    assert parsed.entries[0].content[0].value == "an important message"
    assert feedparser.parse(f"{server}/feed=widgets", etag=parsed.etag).status == 304


def perl(script: str, *args: str, modules: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    need(shutil.which("perl") is not None, "perl is not installed")
    for module in modules:
        found = subprocess.run(["perl", f"-M{module}", "-e", "1"], capture_output=True)
        need(
            found.returncode == 0,
            f"Perl module {module} is missing (Debian: libxml-atom-perl, libatompub-perl)",
        )
    return subprocess.run(["perl", "-e", script, *args], capture_output=True, text=True, timeout=60)


XML_ATOM_CLIENT = r"""
use strict; use warnings;
use XML::Atom::Client; use XML::Atom::Entry;
$XML::Atom::DefaultVersion = '1.0';
my $api = XML::Atom::Client->new;
my $entry = XML::Atom::Entry->new;
$entry->title('from perl');
$entry->content('hello from XML::Atom::Client');
my $uri = $api->createEntry($ARGV[0], $entry) or die 'create: ' . $api->errstr . "\n";
my $got = $api->getEntry($uri) or die 'get: ' . $api->errstr . "\n";
print join("\n", $uri, $got->title, $got->content->body), "\n";
my $feed = $api->getFeed($ARGV[0]) or die 'feed: ' . $api->errstr . "\n";
print scalar(my @e = $feed->entries), "\n";
"""


def test_perl_xml_atom_client_publishes_and_reads(server):
    done = perl(XML_ATOM_CLIENT, f"{server}/feed=widgets", modules=("XML::Atom::Client",))
    assert done.returncode == 0, done.stderr
    uri, title, body, count = done.stdout.split("\n")[:4]
    assert uri.startswith(f"{server}/feed=widgets/entry=")
    assert (title, body, count) == ("from perl", "hello from XML::Atom::Client", "1")


ATOMPUB_CLIENT = r"""
use strict; use warnings;
use Atompub::Client; use XML::Atom::Entry;
$XML::Atom::DefaultVersion = '1.0';
my $client = Atompub::Client->new;
my $service = $client->getService($ARGV[0]) or die 'service: ' . $client->errstr . "\n";
my ($collection) = $service->workspace->collections;
my $href = $collection->href;
my $entry = XML::Atom::Entry->new;
$entry->title('from atompub');
$entry->content('hello from Atompub::Client');
my $uri = $client->createEntry($href, $entry, 'a slug, café') or die 'create: ' . $client->errstr . "\n";
my $feed = $client->getFeed($href) or die 'feed: ' . $client->errstr . "\n";
my $again = $client->getFeed($href) or die 'feed again: ' . $client->errstr . "\n";
print join("\n", $href, $uri, map { $_->title } $again->entries), "\n";
"""


def test_perl_atompub_client_discovers_the_collection_and_publishes(server):
    curl("-f", "-d", ENTRY, f"{server}/feed=widgets")  # a feed exists once it has a message
    done = perl(ATOMPUB_CLIENT, f"{server}/", modules=("Atompub::Client",))
    assert done.returncode == 0, done.stderr
    href, uri, *titles = done.stdout.strip().split("\n")
    assert href == f"{server}/feed=widgets"
    assert uri.startswith(f"{server}/feed=widgets/entry=")
    assert titles == ["allo", "from atompub"]
