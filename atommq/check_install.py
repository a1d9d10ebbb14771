"""The install half of `atommq check`: the user, the Python, the dependencies, the package, the
gateway scripts and their bytecode; and Result, the line of a report. Changes nothing; how a
user's access to a path is decided is permissions.py's."""

import dataclasses
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from atommq.permissions import R, User, W, X, blocker

ROOT = Path(__file__).resolve().parent.parent  # holds atommq/, cgi-bin/, requirements.txt
SCRIPTS = ("atommq.cgi", "atommq.fcgi")
DEPENDENCIES = ("dataset", "lxml", "flup")
SERVER_PATH = "/usr/local/bin:/usr/bin:/bin"  # suexec's; lighttpd passes none at all


@dataclasses.dataclass(frozen=True)
class Result:
    name: str
    status: str  # "ok", "warning" or "problem"
    message: str
    fix: str = ""


def check_user(user: User) -> Result:
    if user.is_me and user.uid == 0:
        return Result(
            "user", "warning", "running as root; a web server runs AtomMQ as another user",
            "run this check as that user: python3 -m atommq check --user www-data (Debian's)",
        )  # fmt: skip
    return Result("user", "ok", f"checking for user {user.name}")


def check_python(user: User, executable: str, version: tuple[int, ...], stdlib: str) -> Result:
    """3.11 or newer, and runnable by that user: the interpreter (a venv's link and the file it
    points to) and its standard library, each with every folder above it."""
    shown = ".".join(map(str, version[:3]))
    if tuple(version[:2]) < (3, 11):
        return Result("python", "problem", f"{executable} is Python {shown}", "use Python 3.11 or newer")
    needs = {executable: X, os.path.realpath(executable): X, stdlib: R | X}
    for path, want in needs.items():
        why = blocker(user, path, want)
        if why:
            return Result(
                "python", "problem", f"user {user.name} cannot run {executable}: {why}",
                "make a venv where that user can run it, not under /root or a private home: "
                "python3 -m venv /srv/atommq/venv (from a Python outside /root too)",
            )  # fmt: skip
    return Result("python", "ok", f"Python {shown}, {executable}")


def _requirements() -> dict[str, str]:
    """Minimum versions from requirements.txt (name>=version lines)."""
    found = {}
    path = ROOT / "requirements.txt"
    for line in path.read_text("utf-8").splitlines() if path.exists() else []:
        name, _, least = line.partition(">=")
        if least:
            found[name.strip().lower()] = least.strip()
    return found


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int("".join(c for c in part if c.isdigit()) or 0) for part in version.split(".")[:3])


def check_dependency(user: User, module: str) -> Result:
    install = f"{sys.executable} -m pip install -r {ROOT / 'requirements.txt'}"
    bad = "warning" if module == "flup" else "problem"  # only atommq.fcgi needs flup
    try:
        imported = importlib.import_module(module)
    except Exception as error:  # ImportError, or a broken install raising anything
        return Result(module, bad, f"cannot import {module}: {error}", install)
    try:
        version = metadata.version(module)
    except metadata.PackageNotFoundError:
        version = str(getattr(imported, "__version__", "?"))
    least = _requirements().get(module)
    if least and _numbers(version) < _numbers(least):
        return Result(module, bad, f"{module} {version} is older than {least}", install)
    why = imported.__file__ and blocker(user, os.path.dirname(imported.__file__), R | X)
    if why:
        fix = "install the dependencies in a Python that user can run (see the python line)"
        return Result(module, "problem", f"user {user.name} cannot import {module}: {why}", fix)
    return Result(module, "ok", f"{module} {version}")


def check_package(user: User) -> Result:
    why = blocker(user, str(ROOT / "atommq" / "__init__.py"), R)
    if why:
        fix = f"copy {ROOT} to a folder that user can read, e.g. /srv/atommq"
        return Result("package", "problem", f"user {user.name} cannot read AtomMQ: {why}", fix)
    return Result("package", "ok", f"{ROOT / 'atommq'}")


def _python_of(shebang: str) -> str | None:
    words = shebang[2:].split()
    if words[:1] == ["/usr/bin/env"] and len(words) > 1:
        return shutil.which(words[1], path=SERVER_PATH)
    return words[0] if words else None


def _missing_modules(python: str) -> list[str] | None:
    """The dependencies that `python` cannot find (found, not imported: fast); None if it fails."""
    code = f"import importlib.util as u; print(*[m for m in {DEPENDENCIES!r} if not u.find_spec(m)])"
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.split() if done.returncode == 0 else None


def check_script(user: User, script: Path) -> Result:
    """Executable, a shebang without CR (a file uploaded from Windows: "bad interpreter"), and
    the Python that shebang finds."""
    why = blocker(user, str(script), R | X)
    if why:
        return Result(script.name, "problem", f"user {user.name} cannot run it: {why}", f"chmod 755 {script}")
    with script.open("rb") as file:
        first = file.readline()
    if not first.startswith(b"#!"):
        return Result(script.name, "problem", "no #! first line", f"make its first line #!{sys.executable}")
    if first.endswith(b"\r\n"):
        fix = f"sed -i 's/\\r$//' {script} (or upload it in text/ASCII mode)"
        return Result(script.name, "problem", "Windows line endings (CRLF): 'bad interpreter'", fix)
    shebang = first.decode("utf-8", "replace").strip()
    python = _python_of(shebang)
    fix = f"make its first line #!{sys.executable}, or have the web server run it with that Python"
    if python is None or not os.path.exists(python):
        return Result(script.name, "problem", f"{shebang}: no such interpreter on {SERVER_PATH}", fix)
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        missing = _missing_modules(python)
        if missing is None or missing:
            lacks = "does not run" if missing is None else "lacks " + ", ".join(missing)
            message = f"{shebang} finds {python} on {SERVER_PATH}, which {lacks}"
            return Result(script.name, "warning", message, fix)
    return Result(script.name, "ok", f"{shebang}")


def _compiled(source: Path, pyc: Path) -> bool:
    """Would Python use `pyc` for `source` (PEP 552 header: magic, flags, mtime, size)?"""
    try:
        with pyc.open("rb") as file:
            header = file.read(16)
    except OSError:
        return False
    if header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    if int.from_bytes(header[4:8], "little"):  # hash-based: checked by hash, if at all
        return True
    st = source.stat()
    stamp = (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    return (int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")) == stamp


def check_bytecode(user: User, package: Path) -> Result:
    """Without a writable __pycache__, Python recompiles every module on every CGI request."""
    cache = package / "__pycache__"
    if not blocker(user, str(cache if cache.is_dir() else package), W | X):
        return Result("bytecode", "ok", f"user {user.name} can write {cache}")
    tag = sys.implementation.cache_tag
    stale = [p.name for p in sorted(package.glob("*.py")) if not _compiled(p, cache / f"{p.stem}.{tag}.pyc")]
    if stale:
        return Result(
            "bytecode", "warning", f"user {user.name} cannot write {cache}; {stale[0]} is not compiled",
            f"{sys.executable} -m compileall {package} (again after each update)",
        )  # fmt: skip
    return Result("bytecode", "ok", f"{cache} is read-only for {user.name}, and compiled")
