"""`atommq consume URL (--state FILE | --name NAME) [--once | --follow] [-- COMMAND ARGS...]`:
the consume loop, at least once and never skipping.

For each message after the cursor, oldest first: COMMAND runs with the message's content on its
stdin (or the message is written to stdout), and only once that succeeded is the message's id
saved as the cursor. A crash at any moment loses nothing: at most the message in hand is given
again. One loop, here, and two keepers of the cursor (cursors.py): `--state FILE`, a line in a
local file, and `--name NAME`, the server's named consumer URL/consumer=NAME.

Standard library only (see client.py).
"""

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any
from urllib.parse import quote

from atommq.client import (
    EXIT_COMMAND_FAILED,
    EXIT_GAP,
    EXIT_OK,
    EXIT_USAGE,
    Answer,
    ClientError,
    Feed,
    refuse,
)
from atommq.cursors import ServerCursor, StateFile
from atommq.model import FEED_NAME, FEED_NAME_RULE

# Answers to a page's GET that are not failures here: an unknown cursor (400; 410 once messages
# expire), no such feed yet (404), nothing new (304).
_CURSOR_STATUSES = frozenset({304, 400, 404, 410})
# Seconds a --follow request asks the server to wait for a message (it caps them: max_wait).
WAIT = 25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the feed's URL, e.g. https://example.org/atommq/feed=jobs")
    cursor = parser.add_argument_group(
        "the cursor",
        "Exactly one of --state and --name keeps it. --state FILE: one line in FILE, saved after "
        "each message; one run at a time holds FILE (another exits 3, or --wait-lock waits). "
        "--name NAME: the server keeps it, as the feed's consumer NAME (URL/consumer=NAME; the "
        "consume right saves it), read at the start and moved after each message only from "
        "where this run last saw it (If-Match). If another run with this name moved it, this one "
        "stops at once with exit 3 and never overwrites it; there is no lock file. A save that "
        "fails for --retry-for seconds stops the run (75): its message is given again next time.",
    )
    keeper = cursor.add_mutually_exclusive_group(required=True)
    keeper.add_argument("--state", metavar="FILE", help="keep the cursor in this local file")
    keeper.add_argument(
        "--name",
        type=_consumer_name,
        metavar="NAME",
        help="keep the cursor on the server, as this feed's consumer NAME",
    )
    cursor.add_argument(
        "--from-now",
        action="store_true",
        help="with no cursor yet (no FILE, or a new NAME), start after the newest message, not at the first",
    )
    cursor.add_argument(
        "--wait-lock", action="store_true", help="--state: wait for another run on FILE to end, not exit"
    )
    cursor.add_argument(
        "--on-gap",
        choices=("stop", "skip"),
        default="stop",
        help="when the server does not know the cursor: stop (exit 4), or go on from its oldest message",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="process what is there, then exit (the default)")
    mode.add_argument("--follow", action="store_true", help="keep going, waiting for new messages")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="without COMMAND: how messages are written"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="--follow: how often to ask a server that cannot wait (5)",
    )
    parser.add_argument(
        "--retry-for",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="retry a passing failure this long (60; --follow: for ever)",
    )
    parser.add_argument("--user", help="log in as this user (password: ATOMMQ_PASSWORD, ~/.netrc, or asked)")
    parser.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE for https")


def _consumer_name(text: str) -> str:
    if not FEED_NAME.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a consumer name: use {FEED_NAME_RULE}")
    return text


class Stopped(Exception):
    """SIGTERM or SIGINT while no message was in hand."""


class Consumer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.command: list[str] = args.program
        self.feed = Feed(args.url, args.user, args.cacert, timeout=30.0)
        self.keeper: StateFile | ServerCursor = (
            StateFile(args.state) if args.name is None else ServerCursor(self.feed, args.name, args.retry_for)
        )
        self.lock = -1  # the state file's lock, while a run holds it
        self.busy = False  # a message is in hand: a signal lets it finish
        self.stopping = False

    def run(self) -> int:
        if self.args.wait_lock and self.args.name is not None:
            raise ClientError(EXIT_USAGE, "--wait-lock goes with --state: --name holds no lock to wait for")
        with self.keeper.locked(self.args.wait_lock) as self.lock:
            previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                return self._run()
            except Stopped:
                return EXIT_OK
            finally:
                for number, handler in previous.items():
                    signal.signal(number, handler)
                self.feed.close()

    def _stop(self, number: int, frame: FrameType | None) -> None:
        self.stopping = True
        if not self.busy:
            raise Stopped()

    def _run(self) -> int:
        cursor = self.keeper.read()
        if cursor is None:
            cursor = self._newest() if self.args.from_now else ""
            if cursor:
                self.keeper.save(cursor)
        tag = ""
        while not self.stopping:
            waiting = self.args.follow
            headers = {"Prefer": f"wait={WAIT}"} if waiting else {}
            if tag:
                headers["If-None-Match"] = tag
            answer = self.feed.retrying(
                "GET",
                f"start_after={quote(cursor, safe=':')}&format=json",
                headers=headers,
                retry_for=float("inf") if self.args.follow else self.args.retry_for,
                timeout=WAIT + 30.0,
                expected=_CURSOR_STATUSES,
            )
            if answer.status == 404 and not self.args.follow:
                return EXIT_OK  # no such feed yet: nothing to process
            if answer.status in (400, 410):
                cursor = self._gap(cursor, answer)
                tag = ""
                continue
            if answer.status in (304, 404):
                if answer.status == 404 or "preference-applied" not in answer.headers:
                    self._pause(self.args.interval)  # not a wait that ran out: ask again later
                continue
            items = answer.items()
            for item in items:
                self.busy = True
                self._process(item)
                cursor = item["id"]
                self.keeper.save(cursor)
                self.busy = False
                if self.stopping:
                    return EXIT_OK
            if items:
                tag = ""
                continue
            if not self.args.follow:
                return EXIT_OK
            tag = answer.headers.get("etag", "")
            if "preference-applied" not in answer.headers:  # the server did not wait: poll
                self._pause(self.args.interval)
        return EXIT_OK

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)  # a signal raises Stopped here

    def _gap(self, cursor: str, answer: Answer) -> str:
        """The server does not know the cursor: stop, or (--on-gap=skip) go on from its oldest.
        Any other 400 is a refusal."""
        line = answer.line()
        if answer.status == 400 and "has no message with id" not in line:
            refuse(answer)
        if self.args.on_gap == "skip" and cursor:
            print(f"atommq: {line}; going on from the feed's oldest message (--on-gap=skip)", file=sys.stderr)
            return ""
        why = "" if answer.status == 410 else f" ({self.keeper.where} {self.keeper.stranger})"
        raise ClientError(EXIT_GAP, f"{line}{why}; --on-gap=skip goes on from the oldest message kept")

    def _newest(self) -> str:
        """The id of the feed's newest message ("" if it has none yet)."""
        answer = self.feed.retrying(
            "GET", "last=1&format=json", retry_for=self.args.retry_for, expected=frozenset({404})
        )
        items = answer.items() if answer.status == 200 else []
        return str(items[-1]["id"]) if items else ""

    def _process(self, item: dict[str, Any]) -> None:
        content = _content(item)
        if not self.command:
            self._write(item, content)
            return
        extension = item.get("_atommq", {})
        env = {
            **os.environ,
            "ATOMMQ_ID": item["id"],
            "ATOMMQ_FEED": self.feed.name,
            "ATOMMQ_TITLE": item.get("title", ""),
            "ATOMMQ_CONTENT_TYPE": extension.get("content_type", "text"),
            "ATOMMQ_PUBLISHED": item.get("date_published", ""),
            "ATOMMQ_URL": item.get("url", ""),
        }
        try:
            # In a process group of its own: a Ctrl-C at the terminal stops this loop after the
            # message, and does not kill the command in the middle of it. It holds the lock too:
            # should this run be killed, the next waits until the command has ended.
            held = (self.lock,) if self.lock >= 0 else ()
            done = subprocess.run(self.command, input=content, env=env, process_group=0, pass_fds=held)
        except OSError as error:
            raise ClientError(EXIT_USAGE, f"cannot run {self.command[0]!r}: {error.strerror}") from None
        if done.returncode != 0:
            how = (
                f"exited with {done.returncode}"
                if done.returncode > 0
                else f"was killed (signal {-done.returncode})"
            )
            raise ClientError(
                EXIT_COMMAND_FAILED,
                f"{self.command[0]} {how} on message {item['id']}; {self.keeper.where} still points before it",
            )

    def _write(self, item: dict[str, Any], content: bytes) -> None:
        if self.args.format == "json":
            line = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        else:
            line = content if content.endswith(b"\n") else content + b"\n"
        try:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            raise ClientError(EXIT_COMMAND_FAILED, "the output was closed") from None


def _content(item: dict[str, Any]) -> bytes:
    """A message's content as the bytes that were published."""
    text = item.get("content_text", item.get("content_html", ""))
    if item.get("_atommq", {}).get("content_encoding") == "base64":
        return base64.b64decode(text)
    return str(text).encode("utf-8")


def run(args: argparse.Namespace) -> int:
    return Consumer(args).run()
