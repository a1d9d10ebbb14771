"""Who may read and who may publish which feeds: the [read] and [publish] sections of the INI
file, and [consume] and [admin]. Each line is `FEED-PATTERN = WHO ...`; the first line whose
pattern matches a feed name decides. WHO is a user name, @users (anyone who logged in) or
@anyone (no login needed).

- read: GET a feed, its messages, its named consumers' positions.
- publish: POST to a feed.
- consume: move or remove a named consumer (PUT/DELETE /feed=NAME/consumer=CNAME). Without a
  [consume] section, those who may publish may: moving a consumer is a write that can make it
  skip messages, so it is not a reader's by default.
- admin: delete a feed. Without an [admin] section no one may, over HTTP (the server's own
  `atommq feeds delete` always can).

Pure: names in, yes or no out. Knows nothing of HTTP, passwords or SQL.
"""

import fnmatch
import re
from dataclasses import dataclass

ANYONE = "@anyone"
USERS = "@users"
ACTIONS = ("read", "publish", "consume", "admin")
_WHO = re.compile(r"\A(@anyone|@users|[\w.-][\w.@-]{0,63})\Z")

Rule = tuple[str, frozenset[str]]


@dataclass(frozen=True)
class Rules:
    """None for an action means no section for it: everyone may (access control is off)."""

    read: tuple[Rule, ...] | None = None
    publish: tuple[Rule, ...] | None = None
    consume: tuple[Rule, ...] | None = None
    admin: tuple[Rule, ...] | None = None

    @property
    def enabled(self) -> bool:
        return any(getattr(self, action) is not None for action in ACTIONS)

    def names_users(self) -> bool:
        """Does any line need a login (a user name or @users)?"""
        sections = (getattr(self, action) for action in ACTIONS)
        return any(who - {ANYONE} for rules in sections for _, who in rules or ())

    def allows(self, action: str, feed: str, user: str | None) -> bool:
        rules: tuple[Rule, ...] | None = getattr(self, action)
        if rules is None and action == "consume":
            return self.allows("publish", feed, user)
        if rules is None:
            return action != "admin"
        for pattern, who in rules:
            if fnmatch.fnmatchcase(feed, pattern):
                return ANYONE in who or (user is not None and (USERS in who or user in who))
        return False  # a feed that no line names is closed

    def anyone_may_read_something(self) -> bool:
        return self.read is None or any(ANYONE in who for _, who in self.read)


def parse(section: str, lines: list[tuple[str, str]]) -> tuple[Rule, ...]:
    """The lines of one section, in file order; ValueError names a bad one."""
    rules = []
    for pattern, value in lines:
        who = frozenset(value.replace(",", " ").split())
        if not who:
            raise ValueError(f"[{section}] {pattern}: says no one; name users, @users or @anyone")
        bad = sorted(w for w in who if not _WHO.match(w))
        if bad:
            raise ValueError(f"[{section}] {pattern}: {bad[0]!r} is neither a user name, @users nor @anyone")
        rules.append((pattern, who))
    return tuple(rules)
