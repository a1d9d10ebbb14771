"""How long each feed keeps its messages: the [retention] section of the INI file. Each line is
`FEED-PATTERN = LIMITS`, the first line whose pattern matches a feed's name decides, and LIMITS
are an age, a count, or both (`30 days`, `100000 messages`, `90 days, 1000000 messages`): a
message goes once it is older than the age or has that many newer ones. A feed no line matches,
or no section at all, keeps everything.

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


@dataclass(frozen=True)
class Limits:
    max_age: int | None = None  # seconds
    max_messages: int | None = None

    def __str__(self) -> str:
        parts = []
        if self.max_age is not None:
            unit = next(
                u for u in ("week", "day", "hour", "minute", "second") if self.max_age % _UNITS[u] == 0
            )
            count = self.max_age // _UNITS[unit]
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
        if self.max_messages is not None:
            parts.append(f"{self.max_messages} message{'' if self.max_messages == 1 else 's'}")
        return ", ".join(parts) or "everything"


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
    age: int | None = None
    count: int | None = None
    for item in filter(None, (part.strip().lower() for part in value.split(","))):
        found = _LIMIT.match(item)
        number, unit = (int(found.group(1)), found.group(2)) if found else (0, "")
        if unit == "message" and count is None and number > 0:
            count = number
        elif unit in _UNITS and age is None and number > 0:
            age = number * _UNITS[unit]
        else:
            raise ValueError(
                f"[retention] {pattern} = {value}: {item!r} is not a limit; give an age (30 days, 12 hours) "
                "and/or a count (100000 messages), each once and above 0"
            )
    if age is None and count is None:
        raise ValueError(f"[retention] {pattern} = {value}: no limit; give e.g. 30 days or 100000 messages")
    return Limits(age, count)
