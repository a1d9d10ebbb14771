"""`atommq check`: the checks of an installation for the web server's user, and their report: the
settings, database and files here; the Python, the scripts and the web server's limit in
check_install.py. Stays off the request path (imported only by `python3 -m atommq check` and by a
gateway script run from a terminal) and import-light: it runs where the dependencies are missing.
How a user's access to a path is decided is permissions.py's."""

# Each check_* function returns a Result (ok, warning, problem or skipped; a fix for a warning or
# a problem) and changes nothing: the write test runs in a transaction that is rolled back, on a
# scratch file beside the database when there is none yet. Decisions:
# - For another user (--user www-data) permissions are computed from file modes, owners and that
#   user's groups (ACLs are not read), and nothing is written: a write as root would leave files
#   that user cannot open. ATOMMQ_* variables are taken as given (set them as the server does);
#   an unset database_url means that user's default: its home, and no XDG_DATA_HOME.
# - A missing flup is a warning (only atommq.fcgi needs it); a #!/usr/bin/env python3 that finds
#   another Python on suexec's PATH (/usr/local/bin:/usr/bin:/bin) is a warning when the web server
#   config names the Python (the deploy/ samples do), a problem when that Python cannot be found.
# - max_body_bytes over mod_fcgid's FcgidMaxRequestLen is a warning only where Debian's Apache
#   loads mod_fcgid (/etc/apache2/mods-enabled): elsewhere that limit does not apply. An
#   unwritable __pycache__ is a warning: it costs, not breaks.
# - A check that cannot run (the write test without dataset, or as another user) is "skipped",
#   saying why; one that raises what it did not expect is its own problem line, never a
#   traceback: `check` is run exactly when things are broken, so the other checks still run.

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from atommq import config
from atommq.check_install import (
    DEPENDENCIES,
    ROOT,
    SCRIPTS,
    Result,
    check_body_limit,
    check_bytecode,
    check_dependency,
    check_package,
    check_python,
    check_script,
    check_user,
    failure,
    guarded,
    install_command,
)
from atommq.errors import ConfigError, StoreUnavailable
from atommq.permissions import R, User, W, X, allows, blocker, describe, find_user

USERS_COMMAND = f"cd {ROOT} && {sys.executable} -m atommq users"  # works from any folder
WEB_ROOTS = ("/var/www", "/srv/www", "/usr/share/nginx/html")
HOME_WEB_ROOTS = ("public_html", "www", "htdocs", "public")
# The package that provides a database driver module, for a missing one (pip's arguments).
DRIVERS = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary", "MySQLdb": "pymysql"}


def environ_for(user: User, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that user's web server would pass: not the caller's XDG_DATA_HOME."""
    return dict(environ) if user.is_me else {k: v for k, v in environ.items() if k != "XDG_DATA_HOME"}


def check_config(environ: Mapping[str, str]) -> tuple[Result, config.Config | None]:
    try:
        settings = config.load(environ)
    except ConfigError as error:
        name = error.setting
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


def check_database_write(settings: config.Config, path: str | None) -> Result:
    """Open the store and publish in a transaction that is rolled back. A SQLite file that does
    not exist yet is not created: the probe runs on a scratch file beside it, then removed."""
    try:
        import dataset  # noqa: F401  # first: the dependency a user installs (SQLAlchemy comes with it)

        from atommq.model import Draft
        from atommq.store import Store
    except ImportError as error:  # what the dependency lines above report
        return Result("write", "skipped", f"not run: {error.name} is missing, and AtomMQ needs it to write")
    url = settings.database_url
    scratch = path if path is not None and not os.path.exists(path) else None
    if scratch is not None:
        scratch = os.path.join(os.path.dirname(scratch), f".atommq-check-{os.getpid()}.db")
        url = "sqlite:///" + scratch
    result = Result("write", "problem", "the write test did not run")
    store = None
    try:
        store = Store(dataclasses.replace(settings, database_url=url, database_is_default=False), pool_size=1)
        with store.writing(commit=False) as session:  # rolled back: nothing is stored
            session.append("atommq-check", Draft("", "text", "atommq check", "text"), now="")
        what = "a scratch file beside it, then removed" if scratch else url
        result = Result("write", "ok", f"wrote to {what} ({store.dialect}), rolled back")
    except ConfigError as error:
        result = Result("write", "problem", str(error), "see the database line above")
    except ModuleNotFoundError as error:
        fix = install_command(DRIVERS.get(str(error.name), str(error.name)))
        if error.name == "MySQLdb":
            fix += ", and write database_url as mysql+pymysql://..."
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
        for suffix in ("", "-wal", "-shm", "-journal", "-writer") if scratch else ():
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
    exists, folder = os.path.exists(log_file), os.path.dirname(os.path.abspath(log_file))
    why = blocker(user, log_file if exists else folder, W)
    if why:
        fix = f"touch {log_file} && chown {user.owner} {log_file}, or unset log_file"
        if not os.path.isdir(folder):
            fix = f"install -d {folder} && {fix}"
        return Result("log_file", "problem", f"user {user.name} cannot append to {log_file}: {why}", fix)
    return Result("log_file", "ok", f"user {user.name} can append to {log_file}")


def run_checks(environ: Mapping[str, str] | None = None, user: User | None = None) -> list[Result]:
    """Every check's line, in order; each runs whatever happened to the others."""
    user = user or find_user()
    env = environ_for(user, os.environ if environ is None else environ)
    python = (sys.executable, sys.version_info[:3], os.path.dirname(os.__file__))
    results = [guarded("user", check_user, user), guarded("python", check_python, user, *python)]
    results += [guarded(module, check_dependency, user, module) for module in DEPENDENCIES]
    results.append(guarded("package", check_package, user))
    results += [guarded(name, check_script, user, ROOT / "cgi-bin" / name) for name in SCRIPTS]
    results.append(guarded("bytecode", check_bytecode, user, ROOT / "atommq"))
    try:
        result, settings = check_config(env)
    except Exception as error:
        result, settings = failure("config", error), None
    results.append(result)
    try:
        if settings is not None:
            _check_settings(results, user, env, settings)
    except Exception as error:  # between two checks: those after it did not run
        results.append(failure("settings", error))
    return results


def _check_settings(results: list[Result], user: User, env: Mapping[str, str], got: config.Config) -> None:
    """The checks that need the settings, each appended as it ends."""
    # An unset database_url means that user's default: in their home, without our XDG_DATA_HOME.
    default = config.default_database_url(env) if user.is_me else config.default_database_url({}, user.home)
    add, url = results.append, default if got.database_is_default else got.database_url
    roots, path = web_roots(user, env), config.sqlite_path(url)
    why = "" if user.is_me else f"a test write as {find_user().name} would leave files {user.name} cannot use"
    if path is not None:
        add(guarded("database", check_database_folder, user, path, url == default))
        if results[-1].status != "ok" or not os.path.isdir(os.path.dirname(path)):
            why = why or ("see the database line" if results[-1].status != "ok" else "no database folder yet")
        if os.path.isabs(path):
            add(guarded("web root", check_web_root, "database_url", path, roots))
    add(
        Result("write", "skipped", f"not run: {why}")
        if why
        else guarded("write", check_database_write, dataclasses.replace(got, database_url=url), path)
    )
    if env.get("ATOMMQ_CONFIG"):
        add(guarded("web root", check_web_root, "ATOMMQ_CONFIG", env["ATOMMQ_CONFIG"], roots, "warning"))
    if got.log_file:
        add(guarded("log_file", check_log_file, user, got.log_file))
        add(guarded("web root", check_web_root, "log_file", got.log_file, roots, "warning"))
    add(guarded("max_body_bytes", check_body_limit, got.max_body_bytes))
    if got.access.enabled and got.users_file:
        add(guarded("users_file", check_users_file, user, got.users_file))
        add(guarded("web root", check_web_root, "users_file", got.users_file, roots))


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
        return Result("users_file", "problem", str(error), f"{USERS_COMMAND} list --file {path}")
    if not known:
        return Result(
            "users_file", "problem", f"{path} holds no users", f"{USERS_COMMAND} add NAME --file {path}"
        )
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
