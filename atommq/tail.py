"""`atommq tail URL [-n N] [-f]`: a person's view of a feed in a terminal: its newest messages,
one line each (time, title or first line of text, id), then, with -f, each new one as it comes.
Keeps no cursor: for processing messages, use consume. Standard library only (see client.py).
"""

import argparse
import base64
import sys
import time
from typing import Any
from urllib.parse import quote

from atommq.client import EXIT_OK, Feed
from atommq.consume import WAIT

_TEXT_WIDTH = 72  # of a title or first line, in characters


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the feed's URL, e.g. https://example.org/atommq/feed=jobs")
    parser.add_argument("-n", type=int, default=10, metavar="N", help="how many of the newest messages (10)")
    parser.add_argument("-f", "--follow", action="store_true", help="then show new messages as they come")
    parser.add_argument("--user", help="log in as this user (password: ATOMMQ_PASSWORD, ~/.netrc, or asked)")
    parser.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE for https")


def run(args: argparse.Namespace) -> int:
    feed = Feed(args.url, args.user, args.cacert)
    # -n 0 shows nothing old, but needs the newest message's id to follow from.
    query, shown = f"last={max(1, args.n)}&format=json", args.n > 0
    headers: dict[str, str] = {}
    try:
        while True:
            answer = feed.retrying(
                "GET",
                query,
                headers=headers,
                retry_for=float("inf") if args.follow else 60.0,
                timeout=WAIT + 30.0,
                expected=frozenset({404}),
            )
            items = answer.items() if answer.status == 200 else []
            for item in items if shown else []:
                print(line(item), flush=True)
            if not args.follow:
                return EXIT_OK
            if items:
                query = f"start_after={quote(items[-1]['id'], safe=':')}&format=json"
            headers, shown = {"Prefer": f"wait={WAIT}"}, True
            if not items and "preference-applied" not in answer.headers:
                time.sleep(5)  # no such feed yet, or a server that cannot wait: ask again later
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        feed.close()


def line(item: dict[str, Any]) -> str:
    """One message: its publication time, its title or the first line of its text (or its type
    and size when it is not text), its id."""
    extension = item.get("_atommq", {})
    when = str(item.get("date_published", ""))[:19].replace("T", " ")
    if item.get("title"):
        text = str(item["title"])
    elif extension.get("content_encoding") == "base64":
        size = len(base64.b64decode(item.get("content_text", "")))
        text = f"[{extension.get('content_type')}, {size} bytes]"
    else:
        text = str(item.get("content_text", item.get("content_html", "")))
    first = text.strip().splitlines()[0] if text.strip() else ""
    shown = first if len(first) <= _TEXT_WIDTH else first[: _TEXT_WIDTH - 1] + "\u2026"
    if sys.stdout.isatty():  # ids in a column
        shown = f"{shown:<{_TEXT_WIDTH}}"
    return f"{when}  {shown}  {item['id']}"
