"""`atommq publish URL [FILE|-]`: one message, sent so that retries never store it twice.

An Idempotency-Key is made once per invocation (or given with --key) and sent with every
attempt: a retry after an answer was lost gets the first attempt's message back, stored once.
Standard library only (see client.py).
"""

import argparse
import mimetypes
import sys
import uuid
from xml.sax.saxutils import escape

from atommq.client import EXIT_OK, EXIT_USAGE, ClientError, Feed

ENTRY_TYPE = "application/atom+xml;type=entry"
TEXT_TYPE = "text/plain; charset=utf-8"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the feed's URL, e.g. https://example.org/atommq/feed=alerts")
    parser.add_argument("file", nargs="?", help="the message: a file, or - for standard input")
    parser.add_argument("--text", help="the message, as text on the command line")
    parser.add_argument(
        "--type",
        help="its media type (default: an Atom entry if it is one, else from the file's name, else text)",
    )
    parser.add_argument("--title", help="its title (the message is then sent inside an Atom entry)")
    parser.add_argument(
        "--key", help="the Idempotency-Key (default: a new one for this run, used by each retry)"
    )
    parser.add_argument(
        "--retry-for",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="retry a passing failure this long (60)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the message's id")
    parser.add_argument("--user", help="log in as this user (password: ATOMMQ_PASSWORD, ~/.netrc, or asked)")
    parser.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE for https")


def run(args: argparse.Namespace) -> int:
    body, media_type = _message(args)
    if args.title is not None:
        body, media_type = _wrapped(body, media_type, args.title), ENTRY_TYPE
    feed = Feed(args.url, args.user, args.cacert)
    key = args.key or str(uuid.uuid4())
    headers = {"Content-Type": media_type, "Idempotency-Key": key}
    try:
        answer = feed.retrying("POST", body=body, headers=headers, retry_for=args.retry_for)
    finally:
        feed.close()
    if not args.quiet:
        print(_message_id(answer.body))
    return EXIT_OK


def _message(args: argparse.Namespace) -> tuple[bytes, str]:
    """The body and its media type, from --text, a file or standard input."""
    if (args.text is None) == (args.file is None):
        raise ClientError(EXIT_USAGE, "give the message as FILE, - (standard input) or --text, one of them")
    if args.text is not None:
        return args.text.encode("utf-8"), args.type or TEXT_TYPE
    if args.file == "-":
        body = sys.stdin.buffer.read()
        guessed = None
    else:
        try:
            with open(args.file, "rb") as file:
                body = file.read()
        except OSError as error:
            raise ClientError(EXIT_USAGE, f"cannot read {args.file!r}: {error.strerror}") from None
        guessed = mimetypes.guess_type(args.file)[0]
    if not body:
        raise ClientError(EXIT_USAGE, "the message is empty; AtomMQ stores no empty message")
    if args.type:
        return body, args.type
    if _is_entry(body):
        return body, ENTRY_TYPE
    if guessed and guessed != "text/plain":
        return body, guessed
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body, "application/octet-stream"
    # Text that XML cannot carry (NUL and other control characters) is binary to AtomMQ.
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return body, "application/octet-stream"
    return body, TEXT_TYPE


def _is_entry(body: bytes) -> bool:
    start = body.removeprefix(b"\xef\xbb\xbf").lstrip()
    if start.startswith(b"<?xml"):
        start = start.partition(b"?>")[2].lstrip()
    return start.startswith(b"<entry") or (start.startswith(b"<") and b":entry" in start[:50].split(b">")[0])


def _wrapped(body: bytes, media_type: str, title: str) -> bytes:
    """The message inside an Atom entry that carries the title."""
    if media_type.startswith("application/atom+xml"):
        raise ClientError(
            EXIT_USAGE, "--title is for a message that is not an Atom entry; give the entry a <title>"
        )
    base = media_type.split(";")[0].strip().lower()
    if base == "text/plain":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientError(EXIT_USAGE, "the message is not UTF-8 text; give its --type") from None
        content = f"<content>{escape(text)}</content>"
    else:
        import base64

        content = f'<content type="{escape(base)}">{base64.b64encode(body).decode("ascii")}</content>'
    return f"<entry><title>{escape(title)}</title>{content}</entry>".encode()


def _message_id(body: bytes) -> str:
    """The stored message's id, from the entry the server answered with (its first <id>)."""
    text = body.decode("utf-8", "replace")
    start = text.find("<id>")
    return text[start + 4 : text.find("</id>", start)] if start >= 0 else ""
