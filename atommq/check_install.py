"""The install half of `atommq check`: the user, the Python, the dependencies, the package, the
gateway scripts, their bytecode and the web server's body limit; Result, the line of a report;
and the install commands its fixes suggest. Changes nothing; how a user's access to a path is
decided is permissions.py's."""

# A fix must work on the system at hand: Debian's own Python refuses pip outside a venv (PEP 668),
# and `python3` may be a pyenv (or similar) shim whose Python lives under /root, where the web
# server's user cannot run it, nor a venv made from it. So fixes name interpreters by full path.

import dataclasses
import glob
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from atommq.permissions import R, User, W, X, blocker

ROOT = Path(__file__).resolve().parent.parent  # holds atommq/, cgi-bin/, requirements.txt
SCRIPTS = ("atommq.cgi", "atommq.fcgi")
DEPENDENCIES = ("dataset", "lxml", "flup")
SERVER_PATH = "/usr/local/bin:/usr/bin:/bin"  # suexec's; lighttpd passes none at all
FCGID_LIMIT = 128 * 1024  # mod_fcgid's default FcgidMaxRequestLen
APACHE = "/etc/apache2"  # Debian's Apache config: mods-enabled/ holds the modules it loads
SYSTEM_PYTHON = "/usr/bin/python3"  # the distribution's, which any user can run
REQUIREMENTS = f"-r {ROOT / 'requirements.txt'}"


@dataclasses.dataclass(frozen=True)
class Result:
    name: str
    status: str  # "ok", "warning", "problem", or "skipped": not run (says why), fails nothing
    message: str
    fix: str = ""


def guarded(name: str, check: Callable[..., Result], *args: Any) -> Result:
    """What `check` finds; an exception it did not expect is its problem line, not a traceback."""
    try:
        return check(*args)
    except Exception as error:
        return failure(name, error)


def failure(name: str, error: Exception) -> Result:
    message = f"the check failed: {type(error).__name__}: {error}"
    return Result(name, "problem", message, "a defect of atommq check: report this line")


def venv_folder() -> str:
    """Where a fix makes a venv: /srv/atommq/venv for root (README, Deploy), else in the home."""
    return "/srv/atommq/venv" if os.geteuid() == 0 else os.path.expanduser("~/atommq-venv")


def make_venv(python: str, packages: str, has_ensurepip: bool) -> str:
    """Commands that make a venv from `python` and install `packages` (pip's arguments) in it."""
    venv = venv_folder()
    make = f"{python} -m venv {venv} && {venv}/bin/pip install {packages}"
    if not has_ensurepip:  # Debian's venv module makes no venv without python3-venv
        get = "apt-get install python3-venv &&" if os.geteuid() == 0 else "have python3-venv installed, then"
        make = f"{get} {make}"
    return f"{make}, then run AtomMQ with {venv}/bin/python3"


def install_command(packages: str) -> str:
    """A command that installs `packages` (pip's arguments) for this Python, and works here."""
    python, has = sys.executable, importlib.util.find_spec
    managed = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")  # PEP 668's mark
    if sys.prefix == sys.base_prefix and os.path.exists(managed):
        why = f" ({python} refuses pip install outside a venv: PEP 668)"
        return make_venv(python, packages, has("ensurepip") is not None) + why
    pip = f"{python} -m pip install {packages}"
    if has("pip") is None:  # a venv made --without-pip, or a Python without it
        if has("ensurepip") is None:
            return f"install pip for {python} (Debian: apt-get install python3-pip), then {pip}"
        return f"{python} -m ensurepip && {pip}"
    return pip


def check_user(user: User) -> Result:
    if user.is_me and user.uid == 0:
        return Result(
            "user", "warning", "running as root; a web server runs AtomMQ as another user",
            f"check for it: cd {ROOT} && {sys.executable} -m atommq check --user www-data (Debian's)",
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
            message = f"user {user.name} cannot run {executable}: {why}"
            return Result("python", "problem", message, _python_for(user))
    return Result("python", "ok", f"Python {shown}, {executable}")


def _python_for(user: User) -> str:
    """A fix for a Python that user cannot run: a venv made from the system's Python, asked (as
    that user) whether it is recent enough and can make a venv."""
    code = (
        "import sys, importlib.util as u; print(sys.version_info >= (3, 11), bool(u.find_spec('ensurepip')))"
    )
    answer = _ask(SYSTEM_PYTHON, user, code)[0].split()
    if answer[:1] != ["True"]:
        return (
            f"install Python 3.11 or newer that user {user.name} can run (Debian 12: apt-get install "
            "python3 python3-venv), then make a venv from it as README.md's Deploy says"
        )
    # A venv's python is a link to the Python it was made from: from a pyenv (or similar) shim's
    # python3, to a Python under /root again.
    why = " (the system's Python: a venv made from a pyenv or similar python3 leads under /root)"
    return make_venv(SYSTEM_PYTHON, REQUIREMENTS, answer[1:] == ["True"]) + why


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
    install = install_command(REQUIREMENTS)
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


def _ask(python: str, user: User, code: str) -> tuple[str, str]:
    """What `python -c code` prints, run as `user` when this process can become them (root), with
    the web server's PATH and nothing else; and "" or why it did not answer (after "which")."""
    switch = os.geteuid() == 0 and not user.is_me
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=20, cwd="/",
            env={"PATH": SERVER_PATH}, user=user.uid if switch else None,
            group=user.gid if switch else None, extra_groups=sorted(user.groups) if switch else None,
        )  # fmt: skip
    except PermissionError:
        return "", f"user {user.name} cannot run"
    except (OSError, subprocess.TimeoutExpired) as error:
        return "", f"does not start for user {user.name}: {error}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return "", f"fails for user {user.name}: {last}"
    return done.stdout, ""


def check_script(user: User, script: Path) -> Result:
    """Executable, a shebang without CR (a file uploaded from Windows: "bad interpreter"), and
    the Python that shebang finds, asked whether it can import what the script needs."""
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
    needs = DEPENDENCIES if script.suffix == ".fcgi" else tuple(m for m in DEPENDENCIES if m != "flup")
    if python is None or not os.path.exists(python):
        message = f"{shebang}: no such interpreter on {SERVER_PATH}"
        return Result(script.name, "problem", message, _script_fix(user, needs))
    # Paths prove nothing (a venv's python is a link to the system's, without the venv's
    # packages): unless it is this very interpreter, ask it, as that user.
    if python == sys.executable and user.is_me:
        return Result(script.name, "ok", shebang)
    finds = f"{shebang} finds {python} on {SERVER_PATH}" if python != shebang[2:].split()[0] else shebang
    code = f"import importlib.util as u; print(*[m for m in {needs!r} if not u.find_spec(m)])"
    answer, why = _ask(python, user, code)  # found, not imported: fast
    missing = answer.split()
    if why or missing:
        lacks = why or f"cannot import {', '.join(missing)} as user {user.name}"
        return Result(script.name, "warning", f"{finds}, which {lacks}", _script_fix(user, needs))
    return Result(script.name, "ok", f"{finds}, which can import {', '.join(needs)} as user {user.name}")


def _script_fix(user: User, needs: tuple[str, ...]) -> str:
    mine = (sys.executable, os.path.realpath(sys.executable), os.path.dirname(os.__file__))
    if any(blocker(user, path, X) for path in mine) or not all(map(importlib.util.find_spec, needs)):
        return _python_for(user)  # this Python will not do either
    return f"make its first line #!{sys.executable}, or have the web server run it with that Python"


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


def fcgid_limits(apache: str) -> list[tuple[int, str]]:
    """The FcgidMaxRequestLen values in Apache's enabled config, each with its file."""
    files = [os.path.join(apache, "apache2.conf")]
    for folder in ("mods-enabled", "conf-enabled", "sites-enabled"):
        files += sorted(glob.glob(os.path.join(apache, folder, "*")))
    found = []
    for file in (file for file in files if os.access(file, os.R_OK) and os.path.isfile(file)):
        text = Path(file).read_text("utf-8", "replace")
        for words in (line.split() for line in text.splitlines()):
            if len(words) > 1 and words[0].lower() == "fcgidmaxrequestlen" and words[1].isdigit():
                found.append((int(words[1]), file))
    return found


def check_body_limit(max_body_bytes: int, apache: str = APACHE) -> Result:
    """mod_fcgid answers 500 to a body over its FcgidMaxRequestLen, where Apache loads it."""
    if not os.path.exists(os.path.join(apache, "mods-enabled", "fcgid.load")):
        return Result("max_body_bytes", "ok", str(max_body_bytes))
    limits = fcgid_limits(apache) or [(FCGID_LIMIT, "its default")]
    limit, where = max(limits)
    if limit >= max_body_bytes:
        return Result("max_body_bytes", "ok", f"{max_body_bytes}, within mod_fcgid's {limit} ({where})")
    return Result(
        "max_body_bytes", "warning",
        f"{max_body_bytes} is over the FcgidMaxRequestLen of mod_fcgid, which {apache} enables: "
        f"{limit} ({where}); under it, Apache answers a larger body with 500",
        f"set FcgidMaxRequestLen {2 * max_body_bytes} in Apache's config and reload it (twice "
        "max_body_bytes, as deploy/apache.conf does), or ignore this if AtomMQ does not run under mod_fcgid",
    )  # fmt: skip
