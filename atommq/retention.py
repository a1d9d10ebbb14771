"""How long each feed keeps its messages: the [retention] section of the INI file. Each line is
`FEED-PATTERN = LIMITS`, the first line whose pattern matches a feed's name decides, and LIMITS
are an age, a count, or both (`30 days`, `100000 messages`, `90 days, 1000000 messages`): a
message goes once it is older than the age or has that many newer ones. A feed no line matches,
or no section at all, keeps everything.

`keep unread up to LIMIT` (an age or a count, or one of each) keeps a message that a named
consumer of the feed has not yet processed past the limits before it, up to that hard limit:
`jobs = 1 day, keep unread up to 30 days`. So a dead consumer cannot fill the disk: past the
hard limit its messages go, and its cursor then gets a 410 (it missed them).

Pure: names and text in, limits out. Knows nothing of SQL or HTTP.
"""

import fnmatch
import re
from dataclasses import dataclass

_UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
}
_LIMIT = re.compile(r"\A(\d{1,12})\s*([a-z]+?)s?\Z")
_UNREAD = re.compile(r"\Akeep\s+unread\s+up\s+to\s+")


@dataclass(frozen=True)
class Limits:
    max_age: int | None = None  # seconds
    max_messages: int | None = None
    # keep unread up to: the hard limits for what a named consumer has not read (None: no keeping)
    unread_age: int | None = None
    unread_messages: int | None = None

    @property
    def keeps_unread(self) -> bool:
        return self.unread_age is not None or self.unread_messages is not None

    def __str__(self) -> str:
        plain = _describe(self.max_age, self.max_messages) or "everything"
        if not self.keeps_unread:
            return plain
        return f"{plain}, keep unread up to {_describe(self.unread_age, self.unread_messages)}"


def _describe(age: int | None, messages: int | None) -> str:
    parts = []
    if age is not None:
        unit = next(u for u in ("week", "day", "hour", "minute", "second") if age % _UNITS[u] == 0)
        count = age // _UNITS[unit]
        parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    if messages is not None:
        parts.append(f"{messages} message{'' if messages == 1 else 's'}")
    return ", ".join(parts)


Rule = tuple[str, Limits]


def parse(lines: list[tuple[str, str]]) -> tuple[Rule, ...]:
    """The lines of the section, in file order; ValueError names a bad one."""
    return tuple((pattern, _limits(pattern, value)) for pattern, value in lines)


def limits_for(rules: tuple[Rule, ...], feed: str) -> Limits | None:
    """The limits of the first rule that matches `feed`; None: it keeps everything."""
    for pattern, limits in rules:
        if fnmatch.fnmatchcase(feed, pattern):
            return limits
    return None


def _limits(pattern: str, value: str) -> Limits:
    # [age, count] of the plain limits, then of keep unread's: "keep unread up to" starts the
    # second, and a bare limit after it (", 1000 messages") belongs to it too.
    found: list[list[int | None]] = [[None, None], [None, None]]
    hard = 0
    for item in filter(None, (" ".join(part.split()).lower() for part in value.split(","))):
        unread = _UNREAD.match(item)
        if unread:
            hard, item = 1, item[unread.end() :]
        limit = _LIMIT.match(item)
        number, unit = (int(limit.group(1)), limit.group(2)) if limit else (0, "")
        kind = 1 if unit == "message" else 0 if unit in _UNITS else None
        if kind is None or number <= 0 or found[hard][kind] is not None:
            raise ValueError(
                f"[retention] {pattern} = {value}: {item!r} is not a limit; give an age (30 days, 12 hours) "
                "and/or a count (100000 messages), each once and above 0, then if you like "
                "keep unread up to a longer age and/or a larger count"
            )
        found[hard][kind] = number * (_UNITS[unit] if kind == 0 else 1)
    (age, count), (unread_age, unread_count) = found
    if age is None and count is None:
        raise ValueError(f"[retention] {pattern} = {value}: no limit; give e.g. 30 days or 100000 messages")
    for plain, hard_limit, what in ((age, unread_age, "age"), (count, unread_count, "count")):
        if plain is not None and hard_limit is not None and hard_limit <= plain:
            raise ValueError(
                f"[retention] {pattern} = {value}: keep unread's {what} must be above the rule's, "
                "or it keeps nothing"
            )
    return Limits(age, count, unread_age, unread_count)
