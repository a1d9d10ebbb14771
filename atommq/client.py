"""HTTP for the client verbs (publish, consume): one feed's URL, its login, and retries that
end in an exit code a cron job or a shell script can act on.

The standard library only: the client runs on a cron box with a bare Python, and must not
import dataset, SQLAlchemy or a database driver (tests/test_client.py checks).
"""

import base64
import http.client
import json
import netrc
import os
import random
import re
import ssl
import time
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

# Exit codes, documented in the README ("Exit codes").
EXIT_OK = 0
EXIT_COMMAND_FAILED = 1  # consume: the COMMAND failed on a message, which stays unprocessed
EXIT_USAGE = 2  # a bad argument, a local file that cannot be used, a server certificate not trusted
EXIT_LOCKED = 3  # consume: another run holds the state file
EXIT_GAP = 4  # consume: the server does not know the cursor: messages may have been missed
EXIT_REFUSED = 65  # the server refused the request (4xx): its one line is on stderr
EXIT_TEMPFAIL = 75  # gave up on a passing condition: no connection, 5xx, 503 (EX_TEMPFAIL)
EXIT_NOPERM = 77  # the login was refused, or the user may not do this (401, 403)

# Statuses that pass: asked again, with backoff, until the time to retry runs out.
PASSING = {408, 425, 429, 500, 502, 503, 504}
_FEED_PATH = re.compile(r"(?P<base>.*)/feed=(?P<name>[^/?#]+)/?\Z")


class ClientError(Exception):
    """What stops a verb: its one line for stderr, and its exit code."""

    def __init__(self, code: int, line: str) -> None:
        super().__init__(line)
        self.code = code
        self.line = line


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    attempts: int = 1  # how many requests retrying() made to get it: after 1, an earlier one may have landed

    def items(self) -> list[dict[str, Any]]:
        """The messages of a JSON Feed page (?format=json)."""
        try:
            document = json.loads(self.body)
            items = document["items"]
            if isinstance(items, list) and all(isinstance(i, dict) and "id" in i for i in items):
                return items
        except (ValueError, KeyError, TypeError):
            pass
        raise ClientError(
            EXIT_REFUSED,
            f"the answer is not a JSON Feed page ({self.headers.get('content-type', 'no type')}): "
            "is the URL an AtomMQ feed, on AtomMQ 0.9 or newer?",
        )

    def line(self) -> str:
        """The server's one line of explanation (its errors are one line of plain text)."""
        text = self.body.decode("utf-8", "replace").strip()
        return text.splitlines()[0] if text else http.client.responses.get(self.status, "")


class Feed:
    """A feed at its URL (https://host/atommq/feed=NAME), spoken to over one kept connection."""

    def __init__(
        self, url: str, user: str | None = None, cacert: str | None = None, timeout: float = 30.0
    ) -> None:
        parts = urlsplit(url)
        found = _FEED_PATH.fullmatch(parts.path)
        if parts.scheme not in ("http", "https") or not parts.hostname or found is None or parts.query:
            raise ClientError(
                EXIT_USAGE,
                f"{url!r} is not a feed's URL; give one such as https://example.org/atommq/feed=jobs",
            )
        self.url = url.rstrip("/")
        self.name = found.group("name")
        self._parts: SplitResult = parts
        self._path = parts.path.rstrip("/")
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=cacert) if parts.scheme == "https" else None
        self._authorization = _authorization(parts.hostname, user)
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        query: str = "",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        below: str = "",
    ) -> Answer:
        """One attempt, at the feed or at `below` it (a quoted path such as /consumer=NAME). A
        connection that fails raises OSError or http.client.HTTPException."""
        sent = dict(headers or {})
        if self._authorization:
            sent["Authorization"] = self._authorization
        if body or method == "POST":
            sent["Content-Length"] = str(len(body))
        connection = self._connect(timeout or self._timeout)
        try:
            target = self._path + below + (f"?{query}" if query else "")
            connection.request(method, target, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        except BaseException:
            self.close()  # a half-used connection is never used again
            raise
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        return answer

    def retrying(
        self,
        method: str,
        query: str = "",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        retry_for: float = 60.0,
        timeout: float | None = None,
        expected: frozenset[int] = frozenset(),
        below: str = "",
    ) -> Answer:
        """request(), again on a connection that fails and on a passing status (PASSING), with
        backoff that honours Retry-After, for `retry_for` seconds at most; then EXIT_TEMPFAIL.
        A refusal (another 4xx) raises at once with its code, unless `expected` has it."""
        deadline = time.monotonic() + retry_for
        for attempt in range(1_000_000):
            try:
                answer = self.request(method, query, body, headers, timeout, below)
            except ssl.SSLCertVerificationError as error:  # does not pass: say what to do
                raise ClientError(
                    EXIT_USAGE, f"cannot trust {self._parts.netloc}: {_reason(error)}"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                reason, pause = f"cannot reach {self._parts.netloc}: {_reason(error)}", None
            else:
                if answer.status not in PASSING:
                    if answer.status not in expected:
                        refuse(answer)
                    return replace(answer, attempts=attempt + 1)
                reason = f"{answer.status} {answer.line()}"
                pause = retry_after(answer.headers.get("retry-after", ""))
            if pause is None:
                pause = min(30.0, 0.5 * 2**attempt) * random.uniform(0.75, 1.25)
            if time.monotonic() + pause > deadline:
                raise ClientError(EXIT_TEMPFAIL, f"gave up after {retry_for:g} s: {reason}")
            time.sleep(pause)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._connection is None:
            host, port = self._parts.hostname or "", self._parts.port
            if self._context is not None:
                self._connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=self._context
                )
            else:
                self._connection = http.client.HTTPConnection(host, port, timeout=timeout)
        self._connection.timeout = timeout
        if self._connection.sock is not None:
            self._connection.sock.settimeout(timeout)
        return self._connection


def refuse(answer: Answer) -> None:
    """Raise the ClientError of a status that is not success and does not pass."""
    if answer.status < 400 or answer.status in PASSING:
        return
    code = EXIT_NOPERM if answer.status in (401, 403) else EXIT_REFUSED
    raise ClientError(code, f"the server answered {answer.status}: {answer.line()}")


def retry_after(value: str) -> float | None:
    """Retry-After's seconds (RFC 9110 10.2.3: a number, or an HTTP date); None if absent."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"its certificate is not trusted ({error.verify_message}); give its CA's certificate with --cacert FILE"
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _authorization(host: str, user: str | None) -> str | None:
    """HTTP Basic credentials: --user with ATOMMQ_PASSWORD, the ~/.netrc entry for the host
    (its login must be --user's when that is given), or a prompt at a terminal. None: no login."""
    password = os.environ.get("ATOMMQ_PASSWORD") if user else None
    if password is None:
        entry = _netrc_entry(host)
        if entry is not None and (user is None or entry[0] == user):
            user, password = entry
    if user is None:
        return None
    if password is None:
        missing = ClientError(
            EXIT_USAGE, f"no password for {user!r}: set ATOMMQ_PASSWORD, or add {host} to ~/.netrc"
        )
        try:  # a terminal to ask at: not in cron, where getpass would read standard input
            open("/dev/tty", "rb").close()
        except OSError:
            raise missing from None
        import getpass

        try:
            password = getpass.getpass(f"Password for {user} at {host}: ")
        except (EOFError, OSError):
            raise missing from None
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def _netrc_entry(host: str) -> tuple[str, str] | None:
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    if not os.path.exists(path):
        return None
    try:
        found = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError) as error:
        raise ClientError(EXIT_USAGE, f"cannot read {path}: {error}") from None
    if found is None or not found[0] or found[2] is None:
        return None
    return found[0], found[2]
