"""`python3 -m atommq check`, and the same diagnosis from a gateway script run in a terminal."""

import grp
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from atommq.check import check_body_limit, check_bytecode, render, run_checks
from atommq.check_install import venv_folder
from atommq.permissions import User, find_user
from conftest import CGI_SCRIPT, FCGI_SCRIPT, ROOT, need, parse_cgi_output
from webservers import SYSTEM_PYTHON, www_python

ME = find_user()  # who runs the tests (root, in CI)
ENTRY = b"<entry><title>allo</title><content>an important message</content></entry>"
REQUIREMENTS = f"-r {ROOT}/requirements.txt"


def check(tmp_path: Path, *args: str, cwd: Path = ROOT, python: str = sys.executable, **env: str | None):
    """Run the check as a user would (None: a variable left unset); returns (exit status, output lines)."""
    environ = {"PATH": os.environ.get("PATH", ""), "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db"}
    environ.update(env)
    environ = {name: value for name, value in environ.items() if value is not None}
    done = subprocess.run(
        [python, "-m", "atommq", "check", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.returncode, done.stdout.splitlines()


def shell(command: str) -> None:
    """Run a fix the check printed, as a user would paste it."""
    subprocess.run(["bash", "-c", command], check=True, capture_output=True, timeout=600)


def system_python_without_dependencies() -> None:
    need(os.path.exists(SYSTEM_PYTHON), f"{SYSTEM_PYTHON} is missing (Debian: python3, python3-venv)")
    found = subprocess.run([SYSTEM_PYTHON, "-c", "import dataset"], capture_output=True).returncode == 0
    need(not found, f"{SYSTEM_PYTHON} has dataset: it cannot show a Python without the dependencies")


def line(lines: list[str], name: str) -> str:
    found = [text for text in lines if text[9:].startswith(name + ":")]
    assert len(found) == 1, lines
    return found[0]


def fix_for(lines: list[str], name: str) -> str:
    following = lines[lines.index(line(lines, name)) + 1]
    assert following.startswith(" " * 9 + "fix: "), lines
    return following.strip()


def copy_of_the_app(tmp_path: Path) -> Path:
    """A copy of what a user uploads: atommq/, cgi-bin/ and requirements.txt side by side."""
    app = tmp_path / "app"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "atommq", app / "atommq", ignore=ignore)
    shutil.copytree(ROOT / "cgi-bin", app / "cgi-bin")
    shutil.copy(ROOT / "requirements.txt", app)
    return app


def test_a_working_installation_passes_and_the_write_test_leaves_nothing_behind(tmp_path):
    status, lines = check(tmp_path)
    assert status == 0, lines
    assert all(text.startswith(("ok ", "warning ", " ")) for text in lines), lines
    for name in ("python", "dataset", "lxml", "config", "database", "web root"):
        assert line(lines, name).startswith("ok "), lines
    assert line(lines, "write").startswith("ok       write: wrote to a scratch file")
    assert list(tmp_path.iterdir()) == []  # no database, no scratch file


def test_write_test_on_an_existing_database_rolls_back(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db",
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/feed=widgets",
        "CONTENT_LENGTH": str(len(ENTRY)),
        "SCRIPT_NAME": "/atommq",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    done = subprocess.run([str(CGI_SCRIPT)], input=ENTRY, env=env, capture_output=True, timeout=60)
    assert parse_cgi_output(done.stdout).status == 201
    status, lines = check(tmp_path)
    assert status == 0, lines
    assert (
        line(lines, "write")
        == f"ok       write: wrote to sqlite:///{tmp_path}/atommq.db (sqlite), rolled back"
    )
    with sqlite3.connect(tmp_path / "atommq.db") as db:
        assert db.execute("SELECT name, last_seq FROM atommq_feeds").fetchall() == [("widgets", 1)]
        assert db.execute("SELECT count(*) FROM atommq_messages").fetchone() == (1,)


def test_database_folder_that_does_not_exist_is_a_problem(tmp_path):
    status, lines = check(tmp_path, ATOMMQ_DATABASE_URL=f"sqlite:///{tmp_path}/missing/atommq.db")
    assert status == 1
    assert line(lines, "database") == f"problem  database: folder {tmp_path}/missing does not exist"
    assert (
        fix_for(lines, "database") == f"fix: install -d -o {ME.owner.replace(':', ' -g ')} {tmp_path}/missing"
    )
    assert not (tmp_path / "missing").exists()


def test_relative_sqlite_path_is_a_problem(tmp_path):
    status, lines = check(tmp_path, ATOMMQ_DATABASE_URL="sqlite:///atommq.db")
    assert status == 1
    assert "is relative" in line(lines, "database")
    assert "sqlite:////var/lib/atommq/atommq.db" in fix_for(lines, "database")


def test_database_under_the_document_root_is_a_problem(tmp_path):
    (tmp_path / "htdocs" / "data").mkdir(parents=True)
    url = f"sqlite:///{tmp_path}/htdocs/data/atommq.db"
    status, lines = check(tmp_path, ATOMMQ_DATABASE_URL=url, DOCUMENT_ROOT=str(tmp_path / "htdocs"))
    assert status == 1
    assert line(lines, "web root") == (
        f"problem  web root: {tmp_path}/htdocs/data/atommq.db is under {tmp_path}/htdocs, "
        "which a web server may serve: it could be downloaded"
    )
    assert "point database_url at it" in fix_for(lines, "web root")
    status, lines = check(tmp_path, ATOMMQ_DATABASE_URL=url, DOCUMENT_ROOT=str(tmp_path / "elsewhere"))
    assert status == 0 and line(lines, "web root").startswith("ok "), lines


@pytest.mark.parametrize(
    ("variable", "value", "fix"),
    [
        ("ATOMMQ_PAGE_SIZE", "lots", "fix: correct the variable ATOMMQ_PAGE_SIZE"),
        ("ATOMMQ_DATABASE_URL", "atommq.db", "fix: correct the variable ATOMMQ_DATABASE_URL"),
    ],
)
def test_bad_setting_is_a_problem_naming_the_setting(tmp_path, variable, value, fix):
    status, lines = check(tmp_path, **{variable: value})
    assert status == 1
    setting = variable.removeprefix("ATOMMQ_").lower()
    assert line(lines, "config").startswith(f"problem  config: setting {setting}: {value!r}")
    assert fix_for(lines, "config") == fix


def test_bad_setting_in_the_ini_file_says_which_file(tmp_path):
    ini = tmp_path / "atommq.ini"
    ini.write_text("[atommq]\nmax_body_bytes = 0\n")
    status, lines = check(tmp_path, ATOMMQ_CONFIG=str(ini))
    assert status == 1
    assert "setting max_body_bytes: '0' is out of range" in line(lines, "config")
    assert fix_for(lines, "config") == f"fix: correct max_body_bytes in {ini}"


def apache_config(tmp_path: Path, fcgid: bool, *conf: str) -> str:
    """A Debian /etc/apache2: mod_fcgid installed (enabled or not) and conf-enabled/ files."""
    apache = tmp_path / "apache2"
    for folder in ("mods-available", "mods-enabled", "conf-enabled"):
        (apache / folder).mkdir(parents=True)
    (apache / "apache2.conf").write_text("IncludeOptional mods-enabled/*.load\n")
    (apache / "mods-available" / "fcgid.load").write_text("LoadModule fcgid_module mod_fcgid.so\n")
    (apache / "mods-available" / "fcgid.conf").write_text(
        "<IfModule mod_fcgid.c>\n  FcgidConnectTimeout 20\n</IfModule>\n"
    )
    if fcgid:
        for name in ("fcgid.load", "fcgid.conf"):
            (apache / "mods-enabled" / name).symlink_to(apache / "mods-available" / name)
    for number, text in enumerate(conf):
        (apache / "conf-enabled" / f"site{number}.conf").write_text(text)
    return str(apache)


def test_body_limit_is_not_mod_fcgids_business_where_apache_does_not_load_it(tmp_path):
    assert (
        render([check_body_limit(1048576, apache_config(tmp_path, False))])
        == "ok       max_body_bytes: 1048576\n"
    )
    assert (
        render([check_body_limit(1048576, str(tmp_path / "no-apache"))])
        == "ok       max_body_bytes: 1048576\n"
    )


def test_body_limit_over_mod_fcgids_limit_is_a_warning_where_apache_loads_it(tmp_path):
    apache = apache_config(tmp_path, True, "# FcgidMaxRequestLen 2097152\n")  # commented out: 128 KiB
    assert render([check_body_limit(1048576, apache)]).splitlines() == [
        f"warning  max_body_bytes: 1048576 is over the FcgidMaxRequestLen of mod_fcgid, which {apache} "
        "enables: 131072 (its default); under it, Apache answers a larger body with 500",
        "         fix: set FcgidMaxRequestLen 2097152 in Apache's config and reload it (twice "
        "max_body_bytes, as deploy/apache.conf does), or ignore this if AtomMQ does not run under mod_fcgid",
    ]
    assert render([check_body_limit(131072, apache)]) == (
        "ok       max_body_bytes: 131072, within mod_fcgid's 131072 (its default)\n"
    )


def test_body_limit_within_fcgid_max_request_len_is_ok(tmp_path):
    apache = apache_config(
        tmp_path, True, "<IfModule mod_fcgid.c>\n    fcgidmaxrequestlen 2097152\n</IfModule>\n"
    )
    assert render([check_body_limit(1048576, apache)]) == (
        f"ok       max_body_bytes: 1048576, within mod_fcgid's 2097152 ({apache}/conf-enabled/site0.conf)\n"
    )
    assert render([check_body_limit(4194304, apache)]).startswith(
        "warning  max_body_bytes: 4194304 is over the FcgidMaxRequestLen of mod_fcgid, which "
        f"{apache} enables: 2097152 ({apache}/conf-enabled/site0.conf)"
    )


def test_log_file_in_a_missing_folder_is_a_problem(tmp_path):
    status, lines = check(tmp_path, ATOMMQ_LOG_FILE=str(tmp_path / "logs" / "atommq.log"))
    assert status == 1
    assert line(lines, "log_file").startswith(
        f"problem  log_file: user {ME.name} cannot append to {tmp_path}/logs/atommq.log"
    )


def test_script_with_windows_line_endings_is_a_problem(tmp_path):
    app = copy_of_the_app(tmp_path)
    script = app / "cgi-bin" / "atommq.cgi"
    script.write_bytes(script.read_bytes().replace(b"\n", b"\r\n"))
    status, lines = check(tmp_path, cwd=app)
    assert status == 1
    assert line(lines, "atommq.cgi") == "problem  atommq.cgi: Windows line endings (CRLF): 'bad interpreter'"
    assert (
        fix_for(lines, "atommq.cgi") == f"fix: sed -i 's/\\r$//' {script} (or upload it in text/ASCII mode)"
    )
    assert "CRLF" not in line(lines, "atommq.fcgi")


def test_script_that_is_not_executable_is_a_problem(tmp_path):
    app = copy_of_the_app(tmp_path)
    (app / "cgi-bin" / "atommq.fcgi").chmod(0o644)
    status, lines = check(tmp_path, cwd=app)
    assert status == 1
    assert "cannot be run" in line(lines, "atommq.fcgi")
    assert fix_for(lines, "atommq.fcgi") == f"fix: chmod 755 {app}/cgi-bin/atommq.fcgi"


def test_python_in_a_private_folder_cannot_be_run_by_another_user(tmp_path):
    private = Path(tempfile.mkdtemp())  # mode 0700, like /root
    try:
        venv = private / "venv"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True
        )
        python = str(venv / "bin" / "python3")
        status, lines = check(tmp_path, "--user", "nobody", python=python)
        assert status == 1
        assert line(lines, "python") == (
            f"problem  python: user nobody cannot run {python}: "
            f"folder {private} (mode 0700, owner {ME.owner}) cannot be entered"
        )
        assert (
            line(lines, "write")
            == f"skipped  write: not run: a test write as {ME.name} would leave files nobody cannot use"
        )
        status, lines = check(tmp_path, python=python)  # its owner can run it
        assert line(lines, "python").startswith("ok       python: Python 3.")
    finally:
        shutil.rmtree(private)


def test_python_that_the_web_servers_user_cannot_run_gets_a_venv_of_the_system_python(tmp_path):
    need(os.path.exists(SYSTEM_PYTHON), f"{SYSTEM_PYTHON} is missing (Debian: python3, python3-venv)")
    private, public = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())  # 0700, like /root; 0755
    try:
        public.chmod(0o755)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(private / "venv")], check=True)
        status, lines = check(tmp_path, "--user", "nobody", python=str(private / "venv" / "bin" / "python3"))
        venv = venv_folder()
        make = f"{SYSTEM_PYTHON} -m venv {venv} && {venv}/bin/pip install {REQUIREMENTS}"
        assert fix_for(lines, "python") == (
            f"fix: {make}, then run AtomMQ with {venv}/bin/python3 (the system's Python: a venv made "
            "from a pyenv or similar python3 leads under /root)"
        )
        shell(make.replace(venv, str(public / "venv")))  # the same, where a test may write
        status, lines = check(tmp_path, "--user", "nobody", python=str(public / "venv" / "bin" / "python3"))
        assert line(lines, "python").startswith("ok       python: Python 3."), lines
        assert line(lines, "dataset").startswith("ok       dataset: dataset 2."), lines
    finally:
        shutil.rmtree(private)
        shutil.rmtree(public)


def test_unknown_user_is_refused(tmp_path):
    status, lines = check(tmp_path, "--user", "no-such-user-here")
    assert status == 2


def test_read_only_bytecode_cache_wants_compileall(tmp_path):
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)  # nobody may enter it, not write it
        package = folder / "atommq"
        shutil.copytree(ROOT / "atommq", package, ignore=shutil.ignore_patterns("__pycache__"))
        nobody = find_user("nobody")
        result = check_bytecode(nobody, package)
        assert result.status == "warning"
        assert result.fix == f"{sys.executable} -m compileall {package} (again after each update)"
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
        assert check_bytecode(nobody, package).status == "ok"
        (package / "config.py").write_text((package / "config.py").read_text() + "\n# changed\n")
        assert check_bytecode(nobody, package).message.endswith("config.py is not compiled")
    finally:
        shutil.rmtree(folder)


@pytest.mark.parametrize(
    ("script", "usage"),
    [(CGI_SCRIPT, "atommq.cgi is a CGI script"), (FCGI_SCRIPT, "usage: atommq.fcgi")],
    ids=["cgi", "fastcgi"],
)
def test_script_run_from_a_terminal_prints_usage_and_the_diagnosis(tmp_path, script, usage):
    env = {"PATH": os.environ.get("PATH", ""), "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/missing/a.db"}
    done = subprocess.run(
        [str(script)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith(usage)
    assert f"What python3 -m atommq check finds for user {ME.name}:" in lines
    assert line(lines, "python").startswith("ok       python: Python 3.")
    assert line(lines, "database") == f"problem  database: folder {tmp_path}/missing does not exist"
    assert "Traceback" not in done.stderr


def test_users_file_that_the_web_servers_user_cannot_read_is_a_problem(tmp_path):
    users = tmp_path / "users"
    added = subprocess.run(
        [sys.executable, "-m", "atommq", "users", "add", "cron", "--file", str(users)],
        input="cron-secret-1\n", capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    assert "add: cron" in added.stdout
    ini = tmp_path / "atommq.ini"
    ini.write_text(f"[atommq]\nusers_file = {users}\n[publish]\n* = cron\n")
    status, lines = check(tmp_path, ATOMMQ_CONFIG=str(ini))
    assert line(lines, "users_file") == f"ok       users_file: 1 user in {users}, readable by {ME.name}"
    status, lines = check(tmp_path, "--user", "www-data", ATOMMQ_CONFIG=str(ini))
    assert status == 1
    assert line(lines, "users_file").startswith(f"problem  users_file: user www-data cannot read {users}")
    users.write_text("cron:plain-text-password\n")
    status, lines = check(tmp_path, ATOMMQ_CONFIG=str(ini))
    assert status == 1 and "line 1: not name:hash" in line(lines, "users_file")


def test_python_without_the_dependencies_gets_a_line_for_each_and_a_fix_that_works(tmp_path):
    venv = tmp_path / "venv"  # none of the dependencies, and no pip either
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python3")
    status, lines = check(tmp_path, python=python)
    assert status == 1
    assert line(lines, "dataset") == "problem  dataset: cannot import dataset: No module named 'dataset'"
    assert line(lines, "write") == "skipped  write: not run: dataset is missing, and AtomMQ needs it to write"
    assert line(lines, "database").startswith("ok ")  # the checks after it ran too
    assert line(lines, "max_body_bytes")
    fix = fix_for(lines, "dataset")
    assert fix == f"fix: {python} -m ensurepip && {python} -m pip install {REQUIREMENTS}"
    shell(fix.removeprefix("fix: "))
    status, lines = check(tmp_path, python=python)
    assert status == 0, lines
    assert line(lines, "dataset").startswith("ok       dataset: dataset 2.")
    assert line(lines, "write").startswith("ok       write: wrote to a scratch file")


def test_missing_dependencies_of_debians_own_python_get_a_venv_as_pip_is_refused_there(tmp_path):
    system_python_without_dependencies()
    stdlib = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    managed = os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED"))
    need(managed, f"{SYSTEM_PYTHON} allows pip install (no PEP 668 EXTERNALLY-MANAGED): Debian 12's does not")
    status, lines = check(tmp_path, python=SYSTEM_PYTHON)
    assert status == 1
    venv = venv_folder()
    make = f"{SYSTEM_PYTHON} -m venv {venv} && {venv}/bin/pip install {REQUIREMENTS}"
    assert fix_for(lines, "dataset") == (
        f"fix: {make}, then run AtomMQ with {venv}/bin/python3 "
        f"({SYSTEM_PYTHON} refuses pip install outside a venv: PEP 668)"
    )
    shell(make.replace(venv, str(tmp_path / "venv")))  # the same, where a test may write
    status, lines = check(tmp_path, python=str(tmp_path / "venv" / "bin" / "python3"))
    assert line(lines, "dataset").startswith("ok       dataset: dataset 2."), lines


def test_write_test_without_a_database_folder_yet_is_skipped_and_fails_nothing(tmp_path):
    status, lines = check(tmp_path, ATOMMQ_DATABASE_URL=None, XDG_DATA_HOME=str(tmp_path / "data"))
    assert status == 0, lines
    assert line(lines, "database") == (
        f"ok       database: {tmp_path}/data/atommq does not exist yet; AtomMQ creates it on first use"
    )
    assert line(lines, "write") == "skipped  write: not run: no database folder yet"
    assert not (tmp_path / "data").exists()


def test_a_check_that_fails_unexpectedly_is_its_own_problem_line_and_the_others_run(tmp_path):
    gid = 54321  # a user whose group is in no group database: chown USER:GROUP cannot be written
    with pytest.raises(KeyError):
        grp.getgrgid(gid)
    ghost = User("ghost", 54320, gid, frozenset({gid}), "/nonexistent")
    (tmp_path / "db").mkdir()
    environ = {"ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/db/atommq.db"}
    lines = render(run_checks(environ, user=ghost)).splitlines()
    assert line(lines, "database") == (
        f"problem  database: the check failed: KeyError: 'getgrgid(): gid not found: {gid}'"
    )
    assert fix_for(lines, "database") == "fix: a defect of atommq check: report this line"
    assert (
        line(lines, "write")
        == f"skipped  write: not run: a test write as {ME.name} would leave files ghost cannot use"
    )
    assert line(lines, "max_body_bytes")


def test_shebang_python_is_asked_whether_it_can_import_the_dependencies(tmp_path):
    system_python_without_dependencies()
    python = str(www_python())  # a venv of the system's Python: its python links to that one
    assert os.path.realpath(python) == os.path.realpath(SYSTEM_PYTHON)
    status, lines = check(tmp_path, python=python)
    assert line(lines, "dataset").startswith("ok "), lines
    assert line(lines, "atommq.cgi") == (
        f"warning  atommq.cgi: #!/usr/bin/env python3 finds {SYSTEM_PYTHON} on /usr/local/bin:/usr/bin:/bin, "
        f"which cannot import dataset, lxml as user {ME.name}"
    )
    assert fix_for(lines, "atommq.cgi") == (
        f"fix: make its first line #!{python}, or have the web server run it with that Python"
    )
    assert line(lines, "atommq.fcgi").endswith("cannot import dataset, lxml, flup as user " + ME.name)


def test_shebang_python_is_asked_as_the_web_servers_user(tmp_path):
    need(os.geteuid() == 0, "only root can ask a Python as another user")
    python = str(www_python())
    folder, private = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())  # 0700, like /root
    try:
        folder.chmod(0o755)
        app = copy_of_the_app(folder)
        (private / "python3").symlink_to(python)  # the same Python, where www-data cannot go
        for shebang, says in [
            (python, f"ok       atommq.cgi: #!{python}, which can import dataset, lxml as user www-data"),
            (
                private / "python3",
                f"warning  atommq.cgi: #!{private}/python3, which user www-data cannot run",
            ),
        ]:
            script = app / "cgi-bin" / "atommq.cgi"
            script.write_text(f"#!{shebang}\n" + script.read_text().partition("\n")[2])
            status, lines = check(tmp_path, "--user", "www-data", cwd=app, python=python)
            assert line(lines, "atommq.cgi") == says
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(private)
