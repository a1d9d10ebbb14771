"""The error tree. Each class owns its HTTP status; `app` turns one into a response, in the one
form every error of AtomMQ's takes on the wire (plain_text: the status and one line of text).

    AtomMQError                 500  (never raised directly)
    +-- BadRequest              400  malformed entry, bad feed name, bad parameter
    |   +-- UnknownCursor       400  start_after/start_at names no message of this feed
    +-- Unauthorized            401  no login, or a wrong one, where one is needed
    +-- Forbidden               403  a user who may not do this to this feed
    +-- NotFound                404  no such feed or message
    +-- MethodNotAllowed        405  carries the allowed methods
    +-- Gone                    410  a cursor whose message retention removed (or its feed deleted)
    +-- PreconditionFailed      412  If-Match / If-None-Match of a PUT did not hold
    +-- LengthRequired          411  a chunked body where the gateway cannot tell its end
    +-- BodyTooLarge            413  body over max_body_bytes
    +-- StoreUnavailable        503  database locked or unreachable; try again later
        +-- StoreConflict       503  a deadlock; publish retries it itself first

ConfigError is apart: it stops the app at start-up and never reaches a client.
"""

from collections.abc import Callable, Iterable
from typing import Any

TEXT_TYPE = "text/plain; charset=utf-8"


def plain_text(
    start_response: Callable[..., Any],
    status: str,
    line: str,
    headers: Iterable[tuple[str, str]] = (),
    head: bool = False,
) -> list[bytes]:
    """Answer `status` with one line of plain text, so that `curl -f` in a cron job fails loudly
    and the line says why; no body for a HEAD request."""
    body = (line.rstrip("\n") + "\n").encode("utf-8")
    start_response(status, [("Content-Type", TEXT_TYPE), *headers, ("Content-Length", str(len(body)))])
    return [b""] if head else [body]


class AtomMQError(Exception):
    status = "500 Internal Server Error"
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(AtomMQError):
    status = "400 Bad Request"


class UnknownCursor(BadRequest):
    pass


class Gone(AtomMQError):
    """A cursor that names a message the feed had, since removed (retention): the consumer
    missed messages. `headers` gains a Link to where the feed now starts (app.py)."""

    status = "410 Gone"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = ()


class PreconditionFailed(AtomMQError):
    status = "412 Precondition Failed"


class Unauthorized(AtomMQError):
    status = "401 Unauthorized"
    # RFC 7617: the realm a browser shows, and the charset of user names and passwords.
    headers = (("WWW-Authenticate", 'Basic realm="AtomMQ", charset="UTF-8"'),)


class Forbidden(AtomMQError):
    status = "403 Forbidden"


class NotFound(AtomMQError):
    status = "404 Not Found"


class MethodNotAllowed(AtomMQError):
    status = "405 Method Not Allowed"

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"method {method} is not allowed here; use {', '.join(allowed)}")
        self.headers = (("Allow", ", ".join(allowed)),)


class LengthRequired(AtomMQError):
    status = "411 Length Required"


class BodyTooLarge(AtomMQError):
    status = "413 Content Too Large"


class StoreUnavailable(AtomMQError):
    status = "503 Service Unavailable"
    headers = (("Retry-After", "1"),)


class ConfigError(Exception):
    """A setting has a bad value: `setting` names it (or ATOMMQ_CONFIG, for the INI file), and
    the message says what is wrong with its value and what to do."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"setting {setting}: {problem}")
        self.setting = setting


class StoreConflict(StoreUnavailable):
    """The database broke a deadlock by rolling this transaction back: running it again is
    safe, and usually succeeds."""
