"""Access control at the door: who the caller is (HTTP Basic against the users file, or the web
server's REMOTE_USER when trusted), and whether they may read or publish a feed: else 401 or 403.

Neither answer says whether the feed exists. Failed logins are logged with the address; passwords
never are. With no [read] or [publish] section, there is no door: credentials are not looked at.
"""

import logging
from typing import Any

from atommq import inbound
from atommq.access import Rules
from atommq.config import Config
from atommq.errors import ConfigError, Forbidden, Unauthorized
from atommq.users import Users, UsersFileError, read


class Guard:
    def __init__(self, config: Config, log: logging.Logger) -> None:
        self.log = log  # failed logins are written here
        self.rules: Rules = config.access
        self.trust_remote_user = config.trust_remote_user
        self.users: Users | None = None
        if config.users_file and self.rules.enabled:
            try:
                known = read(config.users_file)
            except UsersFileError as error:
                raise ConfigError("users_file", str(error)) from None
            if not known:
                raise ConfigError(
                    "users_file",
                    f"{config.users_file!r} holds no users; add one with: python3 -m atommq users add NAME",
                )
            self.users = Users(config.users_file)

    def caller(self, environ: dict[str, Any]) -> str | None:
        """The logged-in user, or None for an anonymous caller; a wrong login is a 401."""
        if not self.rules.enabled:
            return None
        if self.trust_remote_user and environ.get("REMOTE_USER"):
            return str(environ["REMOTE_USER"])
        given = inbound.credentials(environ)
        if given is None or self.users is None:
            return None  # no login, or none that AtomMQ checks itself
        if not self.users.authenticate(*given):
            self.log.warning("failed login as %r from %s", given[0], environ.get("REMOTE_ADDR", "?"))
            raise Unauthorized("wrong user name or password")
        return given[0]

    def check(self, environ: dict[str, Any], action: str, feed: str) -> None:
        """Return if the caller may `action` ("read" or "publish") `feed`; else 401 or 403."""
        if not self.rules.enabled:
            return
        user = self.caller(environ)
        if self.rules.allows(action, feed, user):
            return
        if user is None:
            raise Unauthorized(f"log in to {action} feed {feed!r}")
        raise Forbidden(f"user {user!r} may not {action} feed {feed!r}")

    def may(self, environ: dict[str, Any], action: str, feed: str) -> tuple[bool, bool]:
        """Whether the caller may `action` the feed now, and whether a login could let them:
        what a page offers (a form, or a link to log in)."""
        if not self.rules.enabled:
            return True, False
        user = self.caller(environ)
        if self.rules.allows(action, feed, user):
            return True, False
        return False, user is None and self.rules.names_users()

    def readable(self, environ: dict[str, Any], names: list[str]) -> list[str]:
        """The feeds of `names` that the caller may read (for the service document)."""
        if not self.rules.enabled:
            return names
        user = self.caller(environ)
        if user is None and not self.rules.anyone_may_read_something():
            raise Unauthorized("log in to see the feeds")
        return [name for name in names if self.rules.allows("read", name, user)]
