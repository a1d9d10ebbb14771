"""`atommq check`: the checks of an installation for the web server's user, and their report: the
settings, database, files and limits here, the Python and the scripts in check_install.py. Stays off the request path (imported only by `python3 -m atommq check` and by a gateway script run
from a terminal) and import-light; how a user's access to a path is decided is permissions.py's."""

# Each check_* function returns Results (ok, warning or problem; a fix for the last two) and
# changes nothing: the write test runs in a transaction that is rolled back, on a scratch file
# beside the database when there is none yet. Decisions:
# - For another user (--user www-data) permissions are computed from file modes, owners and that
#   user's groups (ACLs are not read), and nothing is written: a write as root would leave files
#   that user cannot open. ATOMMQ_* variables are taken as given (set them as the server does);
#   an unset database_url means that user's default: its home, and no XDG_DATA_HOME.
# - A missing flup is a warning (only atommq.fcgi needs it); a #!/usr/bin/env python3 that finds
#   another Python on suexec's PATH (/usr/local/bin:/usr/bin:/bin) is a warning when the web server
#   config names the Python (the deploy/ samples do), a problem when that Python cannot be found.
# - max_body_bytes over 128 KiB and an unwritable __pycache__ are warnings: they cost, not break.

import dataclasses
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from atommq import config
from atommq.check_install import (
    DEPENDENCIES,
    ROOT,
    SCRIPTS,
    Result,
    check_bytecode,
    check_dependency,
    check_package,
    check_python,
    check_script,
    check_user,
)
from atommq.errors import ConfigError, StoreUnavailable
from atommq.permissions import R, User, W, X, allows, blocker, describe, find_user

FCGID_LIMIT = 128 * 1024  # mod_fcgid's default FcgidMaxRequestLen
WEB_ROOTS = ("/var/www", "/srv/www", "/usr/share/nginx/html")
HOME_WEB_ROOTS = ("public_html", "www", "htdocs", "public")
# The package that provides a database driver module, for a missing one.
DRIVERS = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "pymysql (and use mysql+pymysql://)",
}


def environ_for(user: User, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that user's web server would pass: not the caller's XDG_DATA_HOME."""
    return dict(environ) if user.is_me else {k: v for k, v in environ.items() if k != "XDG_DATA_HOME"}


def default_database_url(user: User, environ: Mapping[str, str]) -> str:
    """What database_url means when it is not set, for that user."""
    if user.is_me:
        return config.default_database_url(environ)
    return "sqlite:///" + os.path.join(user.home, ".local", "share", "atommq", "atommq.db")


def check_config(environ: Mapping[str, str]) -> tuple[Result, config.Config | None]:
    try:
        settings = config.load(environ)
    except ConfigError as error:
        name = str(error).removeprefix("setting ").partition(" ")[0].rstrip(":")
        variable, where = f"ATOMMQ_{name.upper()}", environ.get("ATOMMQ_CONFIG")
        if name == "ATOMMQ_CONFIG":
            fix = "make ATOMMQ_CONFIG name a readable INI file with an [atommq] section"
        elif name not in config.NAMES:
            fix = f"remove {name} from {where}; the settings are {', '.join(config.NAMES)}"
        else:
            fix = f"correct the variable {variable}" if variable in environ else f"correct {name} in {where}"
        return Result("config", "problem", str(error), fix), None
    sources = [environ["ATOMMQ_CONFIG"]] if environ.get("ATOMMQ_CONFIG") else []
    sources += [f"ATOMMQ_{name.upper()}" for name in config.NAMES if f"ATOMMQ_{name.upper()}" in environ]
    return Result("config", "ok", f"the settings load ({', '.join(['defaults', *sources])})"), settings


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (relative stays relative), or None (not SQLite, in memory)."""
    scheme, _, rest = url.partition("://")
    path = rest.partition("?")[0][1:]
    if scheme.partition("+")[0] != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return None
    return path


def check_database_folder(user: User, path: str, is_default: bool) -> Result:
    """Relative paths, the folder, the file and SQLite's -wal/-shm beside it."""
    group = user.owner.partition(":")[2]
    elsewhere = (
        f"install -d -o {user.name} -g {group} /var/lib/atommq and set "
        "database_url = sqlite:////var/lib/atommq/atommq.db (ATOMMQ_DATABASE_URL)"
    )
    if not os.path.isabs(path):
        message = f"SQLite path {path!r} is relative: to the web server's working folder, cgi-bin/ for CGI"
        return Result("database", "problem", message, elsewhere)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        if not is_default:
            fix = f"install -d -o {user.name} -g {group} {folder}"
            return Result("database", "problem", f"folder {folder} does not exist", fix)
        parent = next(p for p in Path(folder).parents if p.is_dir())
        why = blocker(user, str(parent), W | X)
        if why:
            return Result(
                "database", "problem", f"default folder {folder} cannot be created: {why}", elsewhere
            )
        return Result("database", "ok", f"{folder} does not exist yet; AtomMQ creates it on first use")
    why = blocker(user, folder, W | X)
    if why:
        # The folder itself can be given away; a closed folder above it, like /root, cannot.
        fix = elsewhere if blocker(user, os.path.dirname(folder), X) else f"chown {user.owner} {folder}"
        return Result("database", "problem", f"SQLite needs to write in {folder}: {why}", fix)
    for file in (path, path + "-wal", path + "-shm"):
        if os.path.exists(file) and not allows(user, file, R | W):
            fix = f"chown {user.owner} {path} {path}-wal {path}-shm (those that exist)"
            return Result("database", "problem", f"user {user.name} cannot write {describe(file)}", fix)
    return Result("database", "ok", f"user {user.name} can write {path} and its folder")


def check_database_write(url: str, path: str | None) -> Result:
    """Open the store and publish in a transaction that is rolled back. A SQLite file that does
    not exist yet is not created: the probe runs on a scratch file beside it, then removed."""
    from atommq.model import Draft
    from atommq.store import Store

    scratch = path if path is not None and not os.path.exists(path) else None
    if scratch is not None:
        scratch = os.path.join(os.path.dirname(scratch), f".atommq-check-{os.getpid()}.db")
        url = "sqlite:///" + scratch
    result = Result("write", "problem", "the write test did not run")
    store = None
    try:
        store = Store(url, pool_size=1)
        with store.transaction() as session:
            draft = Draft("", "text", "atommq check", "text")
            session.append("atommq-check", draft, str(uuid.uuid4()), str(uuid.uuid4()), "")
            session.discard = True  # rolled back, not committed
        what = "a scratch file beside it, then removed" if scratch else url
        result = Result("write", "ok", f"wrote to {what} ({store.dialect}), rolled back")
    except ConfigError as error:
        result = Result("write", "problem", str(error), "see the database line above")
    except ModuleNotFoundError as error:
        package = DRIVERS.get(str(error.name), str(error.name))
        fix = f"{sys.executable} -m pip install {package}"
        result = Result("write", "problem", f"no driver for {url.partition(':')[0]}: {error}", fix)
    except Exception as error:
        cause = error.__cause__ if isinstance(error, StoreUnavailable) else error
        message = str(getattr(cause, "orig", None) or cause).splitlines()[0]
        fix = "give this user write access to the database (and its folder, for SQLite)"
        if isinstance(error, StoreUnavailable):
            fix = "start the database server, or check the host, port and credentials in database_url"
            if scratch or url.startswith("sqlite"):  # locked for over 5 s by another writer
                fix = "find the process that holds the database's write lock; then run the check again"
        result = Result("write", "problem", f"{type(cause).__name__}: {message}", fix)
    finally:
        if store is not None:
            store.close()
        for suffix in ("", "-wal", "-shm", "-journal") if scratch else ():
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
    return result


def web_roots(user: User, environ: Mapping[str, str]) -> list[str]:
    roots = [environ["DOCUMENT_ROOT"]] if environ.get("DOCUMENT_ROOT") else []
    return roots + list(WEB_ROOTS) + [os.path.join(user.home, name) for name in HOME_WEB_ROOTS]


def check_web_root(setting: str, path: str, roots: list[str], status: str = "problem") -> Result:
    """A file under a folder a web server may serve can be downloaded by anyone."""
    real = os.path.realpath(path)
    for root in roots:
        if Path(real).is_relative_to(os.path.realpath(root)):
            message = f"{path} is under {root}, which a web server may serve: it could be downloaded"
            fix = f"move it outside every web root (e.g. to /var/lib/atommq/) and point {setting} at it there"
            return Result("web root", status, message, fix)
    found = [root for root in roots if os.path.isdir(root)]
    return Result(
        "web root", "ok", f"{path} is under none of the web roots found ({', '.join(found) or 'none'})"
    )


def check_log_file(user: User, log_file: str) -> Result:
    exists = os.path.exists(log_file)
    why = blocker(user, log_file if exists else os.path.dirname(os.path.abspath(log_file)), W)
    if why:
        fix = f"touch {log_file} && chown {user.owner} {log_file}, or unset log_file"
        return Result("log_file", "problem", f"user {user.name} cannot append to {log_file}: {why}", fix)
    return Result("log_file", "ok", f"user {user.name} can append to {log_file}")


def check_body_limit(max_body_bytes: int) -> Result:
    if max_body_bytes > FCGID_LIMIT:
        return Result(
            "max_body_bytes", "warning", f"{max_body_bytes} is over mod_fcgid's default limit (131072)",
            f"under Apache mod_fcgid, set FcgidMaxRequestLen {max_body_bytes} (deploy/apache.conf does)",
        )  # fmt: skip
    return Result("max_body_bytes", "ok", str(max_body_bytes))


def run_checks(environ: Mapping[str, str] | None = None, user: User | None = None) -> list[Result]:
    user = user or find_user()
    env = environ_for(user, os.environ if environ is None else environ)
    results = [
        check_user(user),
        check_python(user, sys.executable, sys.version_info[:3], os.path.dirname(os.__file__)),
    ]
    results += [check_dependency(user, module) for module in DEPENDENCIES]
    results.append(check_package(user))
    results += [check_script(user, ROOT / "cgi-bin" / name) for name in SCRIPTS]
    results.append(check_bytecode(user, ROOT / "atommq"))
    result, settings = check_config(env)
    results.append(result)
    if settings is None:
        return results
    default = default_database_url(user, env)
    if settings.database_url == config.default_database_url(env):  # not set: that user's default
        settings = dataclasses.replace(settings, database_url=default)
    roots = web_roots(user, env)
    path = sqlite_path(settings.database_url)
    usable = True
    if path is not None:
        results.append(check_database_folder(user, path, settings.database_url == default))
        usable = results[-1].status == "ok" and os.path.isdir(os.path.dirname(path))
        if os.path.isabs(path):
            results.append(check_web_root("database_url", path, roots))
    if not user.is_me:
        why = f"not tried: a test write as {find_user().name} would leave files {user.name} cannot use"
        results.append(Result("write", "ok", why))
    elif usable:
        results.append(check_database_write(settings.database_url, path))
    if env.get("ATOMMQ_CONFIG"):
        results.append(check_web_root("ATOMMQ_CONFIG", env["ATOMMQ_CONFIG"], roots, "warning"))
    if settings.log_file:
        results.append(check_log_file(user, settings.log_file))
        results.append(check_web_root("log_file", settings.log_file, roots, "warning"))
    results.append(check_body_limit(settings.max_body_bytes))
    if settings.access.enabled and settings.users_file:
        results.append(check_users_file(user, settings.users_file))
        results.append(check_web_root("users_file", settings.users_file, roots))
    return results


def check_users_file(user: User, path: str) -> Result:
    """Access rules that name users need a users file that the web server's user can read."""
    from atommq import users  # scrypt and friends: only when there is a file to look at

    why = blocker(user, path, R)
    if why:
        fix = f"chgrp {user.owner.split(':')[-1]} {path} && chmod g+r {path}"
        return Result("users_file", "problem", f"user {user.name} cannot read {path}: {why}", fix)
    try:
        known = users.read(path)
    except users.UsersFileError as error:
        return Result("users_file", "problem", str(error), "python3 -m atommq users list --file " + path)
    if not known:
        return Result("users_file", "problem", f"{path} holds no users", "python3 -m atommq users add NAME")
    return Result(
        "users_file", "ok", f"{len(known)} user{'s' * (len(known) != 1)} in {path}, readable by {user.name}"
    )


def render(results: list[Result]) -> str:
    lines = []
    for result in results:
        lines.append(f"{result.status:<8} {result.name}: {result.message}")
        if result.fix:
            lines.append(f"{'':9}fix: {result.fix}")
    return "\n".join(lines) + "\n"


def diagnosis() -> str:
    """For a gateway script run from a terminal: the same report as `atommq check`."""
    try:
        text = render(run_checks())
    except Exception as error:  # never a traceback at someone reading a usage message
        text = f"problem  check: the check itself failed: {error!r}\n"
    return f"\nWhat python3 -m atommq check finds for user {find_user().name}:\n{text}"


def failed(results: list[Result]) -> bool:
    return any(result.status == "problem" for result in results)
