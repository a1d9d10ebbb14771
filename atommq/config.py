"""Settings: defaults, then an INI file (its path in ATOMMQ_CONFIG), then ATOMMQ_* variables.

Knows nothing of HTTP, XML or SQL. A bad value raises ConfigError naming the setting and value.
"""

import configparser
import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

from atommq import access as access_rules
from atommq import retention as retention_rules
from atommq.errors import ConfigError

SECTION = "atommq"
RETENTION = "retention"


def default_database_url(environ: Mapping[str, str] = os.environ, home: str | None = None) -> str:
    """A SQLite file in the user's data folder (of `home`, when given: another user's): never
    under a web root, created on first use."""
    # expanduser() falls back to the password database when a CGI server gives no HOME.
    data = environ.get("XDG_DATA_HOME") or os.path.join(home or os.path.expanduser("~"), ".local/share")
    return "sqlite:///" + os.path.join(data, "atommq", "atommq.db")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (a relative path stays relative), or None: not SQLite, or a
    database in memory or given as a file: URI."""
    scheme, _, rest = url.partition("://")
    path = rest.partition("?")[0][1:]
    if scheme.partition("+")[0] != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return None
    return path


@dataclasses.dataclass(frozen=True)
class Config:
    # Any SQLAlchemy URL; the default is a SQLite file in ~/.local/share/atommq/.
    database_url: str = dataclasses.field(default_factory=default_database_url)
    # Most messages one feed page holds; a consumer follows rel="next" for the rest.
    page_size: int = 1000
    # Largest request body accepted; anything longer is refused with 413 and not stored.
    max_body_bytes: int = 1024 * 1024
    # File that errors and tracebacks are appended to; empty means the web server's error log.
    log_file: str = ""
    # Least severe level that is logged: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    log_level: str = "WARNING"
    # Public URL of the mount point (https://example.org/atommq) when a proxy hides it; empty
    # means links are built from the request (Host and SCRIPT_NAME).
    base_url: str = ""
    # File of users and password hashes for HTTP Basic logins (`atommq users add` writes it);
    # empty means no logins of AtomMQ's own.
    users_file: str = ""
    # yes: the web server authenticates, and its REMOTE_USER is the user (no password asked).
    trust_remote_user: bool = False
    # Seconds a MariaDB/MySQL server may leave a request unanswered (no greeting, no result)
    # before the answer is a 503: PyMySQL would otherwise wait for ever.
    database_timeout: int = 30
    # Most seconds a feed GET may wait for a new message (?wait=N, Prefer: wait=N); below the
    # web servers' timeouts (mod_fcgid's 40 s) and shared hosts' CGI limits (often 30-60 s).
    # 0 turns waiting off: every GET is answered at once.
    max_wait: int = 25
    # Most requests that may wait at once, counted over every process on this machine that
    # uses the database (waiting.Places); those beyond are answered at once. Under FastCGI each
    # takes a thread while it waits (beside the 8 that do the other work); under CGI a process
    # (the CGI script's default is CGI_MAX_WAITERS), under mod_fcgid one of its processes.
    max_waiters: int = 100
    # Who may read and publish which feeds: the INI file's [read] and [publish] sections.
    # With neither, access control is off: anyone may do anything.
    access: access_rules.Rules = access_rules.Rules()
    # How long each feed keeps its messages: the INI file's [retention] section. None matches:
    # everything is kept.
    retention: tuple[retention_rules.Rule, ...] = ()
    # Not a setting: database_url is the default, whose folder AtomMQ creates on first use (a
    # configured folder must exist already: a typo should be an error, not a new folder).
    database_is_default: bool = False


def _positive_int(name: str, value: str, largest: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a whole number") from None
    if not 1 <= number <= largest:
        raise ConfigError(name, f"{value!r} is out of range; use 1 to {largest}")
    return number


def _check(raw: dict[str, Any]) -> Config:
    values: dict[str, object] = dict(raw)
    if "database_url" in raw:
        url = raw["database_url"].strip()
        if "://" not in url:
            raise ConfigError(
                "database_url", f"{url!r} is not a database URL; use e.g. sqlite:////var/lib/atommq/atommq.db"
            )
        scheme, _, rest = url.partition("://")
        if scheme.startswith("sqlite") and rest.strip("/") in ("", ":memory:"):
            raise ConfigError(
                "database_url",
                f"{url!r} is an in-memory database, which loses every "
                "message when the process ends; use a file, e.g. sqlite:////var/lib/atommq/atommq.db",
            )
        values["database_url"] = url
    if "page_size" in raw:
        values["page_size"] = _positive_int("page_size", raw["page_size"], 100_000)
    if "database_timeout" in raw:
        values["database_timeout"] = _positive_int("database_timeout", raw["database_timeout"], 3600)
    if "max_wait" in raw:
        values["max_wait"] = (
            0 if raw["max_wait"].strip() == "0" else _positive_int("max_wait", raw["max_wait"], 3600)
        )
    if "max_waiters" in raw:
        values["max_waiters"] = _positive_int("max_waiters", raw["max_waiters"], 10_000)
    if "max_body_bytes" in raw:
        values["max_body_bytes"] = _positive_int("max_body_bytes", raw["max_body_bytes"], 2**31)
    if "log_level" in raw:
        level = raw["log_level"].strip().upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(
                "log_level", f"{raw['log_level']!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            )
        values["log_level"] = level
    if raw.get("base_url"):
        base = raw["base_url"].strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError("base_url", f"{raw['base_url']!r} must start with http(s)://")
        values["base_url"] = base
    if "trust_remote_user" in raw:
        flag = raw["trust_remote_user"].strip().lower()
        if flag not in _BOOLEANS:
            raise ConfigError("trust_remote_user", f"{raw['trust_remote_user']!r} is not yes or no")
        values["trust_remote_user"] = _BOOLEANS[flag]
    rules = values.get("access", access_rules.Rules())
    if isinstance(rules, access_rules.Rules) and rules.names_users():
        if not values.get("users_file") and not values.get("trust_remote_user"):
            raise ConfigError(
                "users_file",
                "[read] or [publish] names users, but no one can log in; "
                "set users_file (then: python3 -m atommq users add NAME) or trust_remote_user = yes",
            )
    return Config(**values)  # type: ignore[arg-type]


_BOOLEANS = {
    "yes": True,
    "true": True,
    "on": True,
    "1": True,
    "no": False,
    "false": False,
    "off": False,
    "0": False,
}
# Settings that an INI line or an ATOMMQ_* variable sets; `access` comes from INI sections.
NAMES = tuple(
    f.name for f in dataclasses.fields(Config) if f.name not in ("access", "retention", "database_is_default")
)


def load(environ: Mapping[str, str] | None = None, defaults: Mapping[str, str] | None = None) -> Config:
    """Read the INI file named by ATOMMQ_CONFIG, if any, then the ATOMMQ_* overrides; settings
    that neither sets take `defaults` (a gateway's own, as text) or Config's."""
    env = os.environ if environ is None else environ
    default = default_database_url(env)
    raw: dict[str, Any] = {"database_url": default, **(defaults or {})}
    path = env.get("ATOMMQ_CONFIG", "")
    if path:
        raw.update(_read_ini(path))
    for name in NAMES:
        if f"ATOMMQ_{name.upper()}" in env:
            raw[name] = env[f"ATOMMQ_{name.upper()}"]
    settings = _check(raw)
    return dataclasses.replace(settings, database_is_default=settings.database_url == default)


def _read_ini(path: str) -> dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None, default_section="no default section")
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # feed names keep their case
    try:
        with open(path, encoding="utf-8") as file:
            parser.read_file(file)
    except OSError as error:
        raise ConfigError("ATOMMQ_CONFIG", f"cannot read {path!r}: {error.strerror}") from None
    except configparser.Error as error:
        raise ConfigError("ATOMMQ_CONFIG", f"{path!r} is not a valid INI file: {error}") from None
    if not parser.has_section(SECTION):
        raise ConfigError("ATOMMQ_CONFIG", f"{path!r} has no [{SECTION}] section")
    section: dict[str, Any] = {k.lower(): v for k, v in parser.items(SECTION)}
    unknown = sorted(set(section) - set(NAMES))
    if unknown:
        raise ConfigError(
            unknown[0], f"{path!r} sets it, but there is no such setting; the settings are {', '.join(NAMES)}"
        )
    extra = sorted(set(parser.sections()) - {SECTION, RETENTION, *access_rules.ACTIONS})
    if extra:
        raise ConfigError("ATOMMQ_CONFIG", f"{path!r} has an unknown section [{extra[0]}]")
    try:
        rules = {
            a: access_rules.parse(a, parser.items(a)) for a in access_rules.ACTIONS if parser.has_section(a)
        }
    except ValueError as error:
        raise ConfigError("ATOMMQ_CONFIG", f"{path!r}: {error}") from None
    if rules:
        section["access"] = access_rules.Rules(**rules)
    if parser.has_section(RETENTION):
        try:
            section["retention"] = retention_rules.parse(parser.items(RETENTION))
        except ValueError as error:
            raise ConfigError("ATOMMQ_CONFIG", f"{path!r}: {error}") from None
    return section


def configure_logging(config: Config) -> logging.Logger:
    """A logger for one app, made once where the process starts (the gateway, the command),
    writing to log_file when one is set. It is not the global 'atommq' logger, so that two apps
    in one process each keep to their own file. Without log_file it has no handler: the app
    writes its errors to the web server's error stream (wsgi.errors), and warnings go to
    stderr (logging's last resort), which a web server also logs."""
    logger = logging.Logger("atommq", config.log_level)
    if config.log_file:
        try:
            handler = logging.FileHandler(config.log_file, encoding="utf-8")
        except OSError as error:
            raise ConfigError("log_file", f"cannot open {config.log_file!r}: {error.strerror}") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger
