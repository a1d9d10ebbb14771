"""`atommq consume URL --state FILE [--once | --follow] [-- COMMAND ARGS...]`: the consume loop,
at least once and never skipping.

For each message after the cursor kept in FILE, oldest first: COMMAND runs with the message's
content on its stdin (or the message is written to stdout), and only once that succeeded is
the message's id written to FILE, atomically and durably. A crash at any moment loses nothing:
at most the message in hand is given again. One run at a time holds FILE (a lock beside it).
Standard library only (see client.py).
"""

import argparse
import base64
import contextlib
import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from atommq.client import (
    EXIT_COMMAND_FAILED,
    EXIT_GAP,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_USAGE,
    Answer,
    ClientError,
    Feed,
    refuse,
)

# Answers to a page's GET that are not failures here: an unknown cursor (400; 410 once messages
# expire), no such feed yet (404), nothing new (304).
_CURSOR_STATUSES = frozenset({304, 400, 404, 410})
# Seconds a --follow request asks the server to wait for a message (it caps them: max_wait).
WAIT = 25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the feed's URL, e.g. https://example.org/atommq/feed=jobs")
    parser.add_argument("--state", required=True, metavar="FILE", help="the file that keeps the cursor")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="process what is there, then exit (the default)")
    mode.add_argument("--follow", action="store_true", help="keep going, waiting for new messages")
    parser.add_argument(
        "--from-now",
        action="store_true",
        help="with no FILE yet, start after the newest message, not at the first",
    )
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
        "--wait-lock", action="store_true", help="wait for another run on FILE to end, not exit"
    )
    parser.add_argument(
        "--on-gap",
        choices=("stop", "skip"),
        default="stop",
        help="when the server does not know the cursor: stop (exit 4), or go on from its oldest message",
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


class Stopped(Exception):
    """SIGTERM or SIGINT while no message was in hand."""


class StateFile:
    """The cursor: the id of the last message processed, one line in a file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read(self) -> str | None:
        """The cursor; None when there is no file yet; "" when the file says to start at the first."""
        try:
            return self.path.read_text("utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise ClientError(EXIT_USAGE, f"cannot read the state file {self.path}: {error}") from None

    def save(self, cursor: str) -> None:
        """Write the cursor durably: a temporary file, synced, renamed over FILE, and the folder
        synced, so that after a crash FILE holds this cursor or the one before, whole."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(temporary, "w", encoding="utf-8") as file:
                file.write(cursor + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise ClientError(
                EXIT_USAGE, f"cannot write the state file {self.path}: {error.strerror}"
            ) from None

    @contextlib.contextmanager
    def locked(self, wait: bool) -> Iterator[int]:
        """Held for a run: a second run on the same FILE exits (EXIT_LOCKED), or waits. Yields
        the lock's descriptor: a COMMAND that inherits it holds the lock until it ends too."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise ClientError(EXIT_USAGE, f"cannot use {lock_path}: {error.strerror}") from None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise ClientError(
                    EXIT_LOCKED,
                    f"another run is consuming with {self.path}; this one stops (--wait-lock waits)",
                ) from None
            yield descriptor
        finally:
            os.close(descriptor)


class Consumer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.command: list[str] = args.program
        self.feed = Feed(args.url, args.user, args.cacert, timeout=30.0)
        self.state = StateFile(args.state)
        self.lock = -1  # the state file's lock, while a run holds it
        self.busy = False  # a message is in hand: a signal lets it finish
        self.stopping = False

    def run(self) -> int:
        with self.state.locked(self.args.wait_lock) as self.lock:
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
        cursor = self.state.read()
        if cursor is None:
            cursor = self._newest() if self.args.from_now else ""
            if cursor:
                self.state.save(cursor)
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
                self.state.save(cursor)
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
        why = (
            ""
            if answer.status == 410
            else f" (the state file {self.state.path} is another feed's or server's, or its message was removed "
            "by an AtomMQ older than 0.9)"
        )
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
            done = subprocess.run(
                self.command, input=content, env=env, process_group=0, pass_fds=(self.lock,)
            )
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
                f"{self.command[0]} {how} on message {item['id']}; the state file still points before it",
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
