"""Real lighttpd and Apache 2.4, started from the very sample files in deploy/, as a user would.

Each server gets a folder of its own under /tmp (state/, run/, log/, htdocs/), a free port on
127.0.0.1, and runs AtomMQ as www-data: from a copy of atommq/ and cgi-bin/ that www-data can
read, with a venv's Python that www-data can run (built once per machine, see www_python).
The only changes to a sample are those its comments name: its variables (lighttpd's `var.*`
lines, Apache's `Define`s given with -C) and the documented sed that switches to an alternative.
"""

import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WWW_USER = "www-data"
SYSTEM_PYTHON = "/usr/bin/python3"
KINDS = (
    "lighttpd-fastcgi",
    "lighttpd-cgi",
    "apache-cgi",
    "apache-fcgid",
    "apache-proxy-fcgi",
    "apache-htaccess",
)
MODULES = "/usr/lib/apache2/modules"
# A shared host as many are: a web root whose .htaccess may set handlers, options, rewrites and
# authentication, a python3 on the scripts' PATH, and nothing of AtomMQ's in the server config.
SHARED_HOST = """
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule authn_core_module {modules}/mod_authn_core.so
LoadModule authn_file_module {modules}/mod_authn_file.so
LoadModule auth_basic_module {modules}/mod_auth_basic.so
LoadModule authz_user_module {modules}/mod_authz_user.so
LoadModule env_module {modules}/mod_env.so
LoadModule cgid_module {modules}/mod_cgid.so
LoadModule rewrite_module {modules}/mod_rewrite.so
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
User www-data
Group www-data
PidFile {run}/apache2.pid
DefaultRuntimeDir {run}
ErrorLog {log}/error.log
DocumentRoot {htdocs}
SetEnv PATH {venv}/bin:/usr/local/bin:/usr/bin:/bin
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory {htdocs}>
    AllowOverride FileInfo Options AuthConfig Limit
    Options SymLinksIfOwnerMatch
    Require all granted
</Directory>
"""
# The seds the samples document, to switch to an alternative.
LIGHTTPD_CGI = ["-e", r'/^\$HTTP\["url"\]/,/^}/s/^/#/', "-e", "s/^#CGI# //"]
APACHE_ALTERNATIVE = ["-e", "/^ScriptAlias/,/^<.Directory>/s/^/#/"]


def missing() -> str | None:
    """Why web-server tests cannot run here, or None."""
    for program in ("lighttpd", "apache2", "runuser"):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian: lighttpd, apache2, libapache2-mod-fcgid)"
    if not Path("/usr/lib/apache2/modules/mod_fcgid.so").exists():
        return "mod_fcgid is not installed (Debian: libapache2-mod-fcgid)"
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    if os.geteuid() != 0:
        return "the web servers are started as root, to run AtomMQ as www-data"
    try:
        pwd.getpwnam(WWW_USER)
    except KeyError:
        return f"user {WWW_USER} does not exist"
    return None


def www_uid() -> int:
    """The user the web servers run AtomMQ as (root's own when there is no such user)."""
    try:
        return pwd.getpwnam(WWW_USER).pw_uid
    except KeyError:
        return os.getuid()


def www_python() -> Path:
    """A venv Python with requirements.txt (and the database drivers) installed that www-data
    can run (a venv made from a Python under /root cannot be: 500, blaming the script). Built
    once per machine and requirements, in /var/tmp."""
    files = [ROOT / "requirements.txt", ROOT / "requirements-databases.txt"]
    requirements = b"".join(f.read_bytes() for f in files)
    venv = Path("/var/tmp") / f"atommq-test-venv-{hashlib.sha256(requirements).hexdigest()[:12]}"
    python = venv / "bin" / "python3"
    with open("/var/tmp/atommq-test-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "ready").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    *(arg for f in files for arg in ("-r", str(f))),
                ],
                check=True,
                capture_output=True,
            )
            (venv / "ready").touch()
    return python


def deploy_app(python: Path) -> Path:
    """Copy atommq/, cgi-bin/ and deploy/ (lighttpd's error file) where www-data can read them,
    compiled once as the README says (www-data cannot write __pycache__, so Python would
    compile every module per CGI request)."""
    folder = Path(tempfile.mkdtemp(prefix="amqapp", dir="/tmp"))
    folder.chmod(0o755)
    for part in ("atommq", "cgi-bin", "deploy"):
        shutil.copytree(ROOT / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([str(python), "-m", "compileall", "-q", str(folder / "atommq")], check=True)
    return folder


def answers(port: int, alive: Callable[[], bool], seconds: float = 30) -> bool:
    """Whether a server comes to accept connections on 127.0.0.1:`port` within `seconds`, while
    `alive()` says its processes still run."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline or not alive():
                return False
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebServer:
    """One real web server serving AtomMQ at http://127.0.0.1:PORT/atommq."""

    def __init__(
        self, kind: str, python: Path, app: Path, settings: dict[str, str], sections: str = ""
    ) -> None:
        """`settings`: ATOMMQ_* values, written to the INI file the sample names, and after them
        `sections` (e.g. "[retention]\n..."). A database URL among the settings replaces the
        sample's SQLite one (lighttpd only: its var.atommq_env line)."""
        self.kind = kind
        self.folder = Path(tempfile.mkdtemp(prefix="amqweb", dir="/tmp"))
        self.folder.chmod(0o755)
        www = pwd.getpwnam(WWW_USER)
        for name in ("state", "run", "log", "htdocs"):
            (self.folder / name).mkdir()
            if name != "htdocs":
                os.chown(self.folder / name, www.pw_uid, www.pw_gid)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/atommq"
        self.db_path = self.folder / "state" / "atommq.db"
        self.log_path = self.folder / "log" / "atommq.log"
        # Settings a test asks for go in an INI file, which the samples name with a variable.
        self.ini = self.folder / "state" / "atommq.ini"
        values = {"log_file": str(self.log_path)}
        values.update({k.removeprefix("ATOMMQ_").lower(): v for k, v in settings.items()})
        # The environment wins over the INI file, and the samples set the URL there.
        self.database_url = values.pop("database_url", f"sqlite:///{self.db_path}")
        if not kind.startswith("lighttpd") and not self.database_url.startswith("sqlite:///"):
            raise ValueError(f"{kind}: only the lighttpd sample is run with another database")
        self.ini.write_text("[atommq]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + sections)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._stderr = (self.folder / "server-stderr.log").open("wb")
        getattr(self, "_start_" + kind.split("-")[0])(python, app)
        self._wait()

    def _run(self, command: list[str], **kwargs: object) -> None:
        self.processes.append(
            subprocess.Popen(command, stdout=self._stderr, stderr=self._stderr, **kwargs)  # type: ignore[call-overload]
        )

    def _start_lighttpd(self, python: Path, app: Path) -> None:
        variables = {
            "atommq_root": app,
            "python": python,
            "state_dir": self.folder / "state",
            "socket_dir": self.folder / "run",
            "log_dir": self.folder / "log",
            "document_root": self.folder / "htdocs",
            "atommq_config": self.ini,
        }
        seds = [arg for k, v in variables.items() for arg in ("-e", f's|^var.{k} = .*|var.{k} = "{v}"|')]
        seds += ["-e", f"s|^var.port = .*|var.port = {self.port}|"]
        seds += ["-e", f's|"ATOMMQ_DATABASE_URL" => .*,|"ATOMMQ_DATABASE_URL" => "{self.database_url}",|']
        if self.kind == "lighttpd-cgi":
            seds += LIGHTTPD_CGI
        conf = self.folder / "lighttpd.conf"
        conf.write_bytes(
            subprocess.run(
                ["sed", *seds, str(ROOT / "deploy" / "lighttpd.conf")], check=True, capture_output=True
            ).stdout
        )
        check = subprocess.run(["lighttpd", "-tt", "-f", str(conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"lighttpd refuses {conf}: {check.stderr}")
        self._run(["lighttpd", "-D", "-f", str(conf)])

    def _start_apache(self, python: Path, app: Path) -> None:
        if self.kind == "apache-htaccess":
            return self._start_shared_host(python, app)
        conf = ROOT / "deploy" / "apache.conf"
        if self.kind in ("apache-fcgid", "apache-proxy-fcgi"):
            marker = "FCGID" if self.kind == "apache-fcgid" else "PROXY"
            conf = self.folder / "apache.conf"
            conf.write_bytes(
                subprocess.run(
                    [
                        "sed",
                        *APACHE_ALTERNATIVE,
                        "-e",
                        f"s/^#{marker}# //",
                        str(ROOT / "deploy" / "apache.conf"),
                    ],
                    check=True,
                    capture_output=True,
                ).stdout
            )
        if self.kind == "apache-proxy-fcgi":
            # Started on its own, as www-data, as the sample's comment says.
            socket_path = self.folder / "run" / "atommq.sock"
            self._run(
                [
                    "runuser",
                    "-u",
                    WWW_USER,
                    "--",
                    "env",
                    f"ATOMMQ_DATABASE_URL=sqlite:///{self.db_path}",
                    f"ATOMMQ_CONFIG={self.ini}",
                    str(python),
                    str(app / "cgi-bin" / "atommq.fcgi"),
                    str(socket_path),
                ]
            )
            deadline = time.monotonic() + 30
            while not socket_path.exists():
                if time.monotonic() > deadline or self.processes[-1].poll() is not None:
                    raise RuntimeError(f"atommq.fcgi did not start: {self.stderr}")
                time.sleep(0.05)
        defines = {
            "ATOMMQ_ROOT": app,
            "ATOMMQ_VENV": python.parent.parent,
            "ATOMMQ_STATE_DIR": self.folder / "state",
            "ATOMMQ_PORT": self.port,
            "ATOMMQ_LOG_DIR": self.folder / "log",
            "ATOMMQ_RUN_DIR": self.folder / "run",
            "ATOMMQ_CONFIG": self.ini,
        }
        options = [arg for k, v in defines.items() for arg in ("-C", f"Define {k} {v}")]
        self._run(["apache2", *options, "-f", str(conf), "-DATOMMQ_STANDALONE", "-DFOREGROUND"])

    def _start_shared_host(self, python: Path, app: Path) -> None:
        """The user copies cgi-bin/ and atommq/ into the web root and the sample as .htaccess,
        changing the two lines it marks."""
        htdocs = self.folder / "htdocs"
        for part in ("atommq", "cgi-bin"):
            shutil.copytree(app / part, htdocs / part)
        sample = (ROOT / "deploy" / "shared-hosting.htaccess").read_text()
        sample = sample.replace("/home/YOU/atommq-data/atommq.db", str(self.db_path))
        sample = sample.replace('SetEnv ATOMMQ_CONFIG ""', f"SetEnv ATOMMQ_CONFIG {self.ini}")
        (htdocs / ".htaccess").write_text(sample)
        conf = self.folder / "host.conf"
        conf.write_text(
            SHARED_HOST.format(
                modules=MODULES,
                port=self.port,
                run=self.folder / "run",
                log=self.folder / "log",
                htdocs=htdocs,
                venv=python.parent.parent,
            )
        )
        self._run(["apache2", "-f", str(conf), "-DFOREGROUND"])

    def _wait(self) -> None:
        if not answers(self.port, lambda: all(p.poll() is None for p in self.processes)):
            self.stop()
            raise RuntimeError(f"{self.kind} did not start: {self.stderr}")

    @property
    def stderr(self) -> str:
        logs = [self.folder / "server-stderr.log", *sorted((self.folder / "log").glob("*.log"))]
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')}" for p in logs if p.exists())

    def error_log(self) -> str:
        """What the web server logged: its error log, and lighttpd's breakage log (CGI stderr)."""
        logs = [self.folder / "log" / n for n in ("error.log", "atommq-stderr.log")]
        return "".join(p.read_text(errors="replace") for p in logs if p.exists())

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Spawned FastCGI processes, mod_fcgid's and lighttpd's, end with their server; make sure.
        subprocess.run(["pkill", "-f", str(self.folder)], capture_output=True)
        self._stderr.close()
        shutil.rmtree(self.folder, ignore_errors=True)


if __name__ == "__main__":  # a manual smoke run: python3 tests/webservers.py KIND
    app_python = www_python()
    server = WebServer(sys.argv[1], app_python, deploy_app(app_python), {})
    print(server.url, "- Ctrl-C stops it")
    try:
        signal.pause()
    finally:
        server.stop()
