"""The gateway scripts as users run them: from a web server, from a terminal, misconfigured."""

import fcntl
import glob
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import fastcgi_client
from conftest import ATOM_NS, CGI_SCRIPT, FCGI_SCRIPT, SQLITE_TRANSPORTS, need, parse_cgi_output

ENTRY = b"<entry><title>allo</title><content>an important message</content></entry>"


def cgi_env(
    tmp_path: Path, method: str = "GET", path: str = "/", body: bytes = b"", content_type: str = ""
) -> dict[str, str]:
    """The environment of a request to the CGI script (or the parameters of a FastCGI one), with
    a database in tmp_path."""
    headers = {"Content-Type": content_type} if content_type else {}
    return {
        "PATH": os.environ.get("PATH", ""),
        "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db",
        **fastcgi_client.meta_variables(method, path, headers=headers, body=body),
    }


@pytest.mark.parametrize("script", [CGI_SCRIPT, FCGI_SCRIPT], ids=["cgi", "fastcgi"])
def test_script_run_from_a_terminal_says_how_to_use_it(script, tmp_path):
    env = {"PATH": os.environ.get("PATH", ""), "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    done = subprocess.run(
        [str(script)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    output = done.stdout + done.stderr
    assert "README" in output or "usage" in output
    assert "Traceback" not in output


def test_fastcgi_serves_the_socket_a_web_server_hands_it_on_stdin(tmp_path):
    """lighttpd's bin-path and mod_fcgid spawn the script with the listening socket as fd 0."""
    path = Path(tempfile.mkdtemp(prefix="amq")) / "s"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    env = {**os.environ, "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db"}
    server = subprocess.Popen([str(FCGI_SCRIPT)], stdin=listener.fileno(), env=env, stderr=subprocess.PIPE)
    listener.close()
    try:
        params = cgi_env(tmp_path, "POST", "/feed=widgets", ENTRY, "application/x-www-form-urlencoded")
        response = parse_cgi_output(fastcgi_client.request(str(path), params, ENTRY)[0])
        assert response.status == 201
        params.update(REQUEST_METHOD="GET", CONTENT_LENGTH="")
        response = parse_cgi_output(fastcgi_client.request(str(path), params)[0])
        assert response.status == 200
        assert b"an important message" in response.body
    finally:
        server.terminate()
        server.wait(timeout=10)
        path.unlink(missing_ok=True)


@pytest.mark.http
def test_concurrent_first_posts_to_a_new_feed_all_succeed(make_client):
    client = make_client()
    client.get("/")  # start the server, where there is one
    results: list[int] = []

    def post(i: int) -> None:
        results.append(client.post("/feed=brand-new", f"<entry><content>{i}</content></entry>").status)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [201] * 16
    assert len(client.get("/feed=brand-new").ids()) == 16


def test_concurrent_first_posts_from_separate_cgi_processes_all_succeed(tmp_path):
    env = cgi_env(tmp_path, "POST", "/feed=brand-new", ENTRY, "text/plain")
    processes = [
        subprocess.Popen(
            [str(CGI_SCRIPT)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(ENTRY, timeout=60) for p in processes]
    assert [parse_cgi_output(out).status for out, _ in outputs] == [201] * 8, outputs[0][1]
    get = subprocess.run(
        [str(CGI_SCRIPT)],
        env={**env, "REQUEST_METHOD": "GET", "CONTENT_LENGTH": ""},
        capture_output=True,
        timeout=60,
    )
    assert parse_cgi_output(get.stdout).body.count(b"<entry>") == 8


def test_a_cgi_request_does_not_import_alembic_which_it_never_uses(tmp_path):
    """dataset imports alembic's migrations, with Mako and Pygments, for Database.op, which
    AtomMQ never calls: a CGI process would load them on every request (atommq/deferred.py)."""
    publish = cgi_env(tmp_path, "POST", "/feed=widgets", ENTRY, "text/plain")
    read = cgi_env(tmp_path, "GET", "/feed=widgets")
    for env, body, status in ((publish, ENTRY, 201), (read, b"", 200)):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", str(CGI_SCRIPT)],
            input=body,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert parse_cgi_output(done.stdout).status == status, done.stderr[-2000:]
        imported = {line.rpartition("|")[2].strip() for line in done.stderr.decode().splitlines()}
        assert "dataset.database" in imported and "sqlalchemy" in imported
        assert {name for name in imported if name.partition(".")[0] in ("alembic", "mako")} == set()


def test_dataset_migrations_still_work_when_something_uses_them(tmp_path):
    """What atommq/deferred.py leaves out of a request is there for whoever needs it."""
    code = (
        "import sys, sqlalchemy as sa\n"
        "from atommq.deferred import dataset\n"
        "assert 'alembic' not in sys.modules\n"
        "database = dataset.connect(sys.argv[1])\n"
        "database.op.create_table('made_by_alembic', sa.Column('pk', sa.Integer, primary_key=True))\n"
        "import alembic.operations\n"
        "assert isinstance(database.op, alembic.operations.Operations)\n"
    )
    url = f"sqlite:///{tmp_path}/atommq.db"
    done = subprocess.run(
        [sys.executable, "-c", code, url], cwd=CGI_SCRIPT.parent.parent, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    tables = sqlite3.connect(tmp_path / "atommq.db").execute("select name from sqlite_master").fetchall()
    assert ("made_by_alembic",) in tables


def atommq_command(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """`python3 -m atommq ARGUMENTS`, from the checkout, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "atommq", *arguments],
        env=env,
        cwd=CGI_SCRIPT.parent.parent,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ATOMMQ_PAGE_SIZE", "lots"),
        ("ATOMMQ_MAX_BODY_BYTES", "-1"),
        ("ATOMMQ_LOG_LEVEL", "LOUD"),
        ("ATOMMQ_DATABASE_URL", "atommq.db"),
        ("ATOMMQ_DATABASE_URL", "sqlite:////nonexistent/folder/atommq.db"),
        ("ATOMMQ_DATABASE_URL", "sqlite://"),
    ],
)
def test_bad_setting_stops_start_up_naming_the_setting_and_value(tmp_path, name, value):
    setting = name.removeprefix("ATOMMQ_").lower()
    env = {**cgi_env(tmp_path), name: value}
    cgi = subprocess.run([str(CGI_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    response = parse_cgi_output(cgi.stdout.encode())
    assert response.status == 500
    assert value not in response.text  # the client learns only that the log has the reason
    assert setting in cgi.stderr and repr(value) in cgi.stderr
    fcgi = subprocess.run(
        [str(FCGI_SCRIPT), str(tmp_path / "s")], env=env, capture_output=True, text=True, timeout=30
    )
    assert fcgi.returncode == 2
    assert setting in fcgi.stderr and repr(value) in fcgi.stderr
    serve = atommq_command(env, "serve", "--port", "0")
    assert serve.returncode == 2
    assert setting in serve.stderr and repr(value) in serve.stderr


@pytest.mark.parametrize("transport", SQLITE_TRANSPORTS)  # it breaks a SQLite file
def test_unexpected_error_is_a_generic_500_and_its_traceback_is_logged(client):
    client.db_path.write_bytes(b"this is not a SQLite database, it is garbage" * 100)
    response = client.get("/feed=widgets")
    assert response.status == 500
    assert response.text == "AtomMQ had an internal error; the server's error log has the details\n"
    assert "Traceback" in client.log and "not a database" in client.log


def test_fastcgi_started_by_hand_listens_on_host_and_port(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db"}
    server = subprocess.Popen([str(FCGI_SCRIPT), f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE)
    try:
        params = cgi_env(tmp_path)
        for _ in range(200):
            try:
                output = fastcgi_client.request(("127.0.0.1", port), params)[0]
                break
            except OSError:
                time.sleep(0.05)
        assert parse_cgi_output(output).status == 200
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("transport", SQLITE_TRANSPORTS)  # it locks a SQLite file
def test_locked_database_is_503_with_retry_after_and_the_next_request_succeeds(client):
    client.publish("widgets", "first")
    holder = sqlite3.connect(client.db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing, for longer than the busy timeout
    try:
        response = client.post("/feed=widgets", "<entry><content>refused</content></entry>")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert response.status == 503
    assert response.headers["retry-after"] == "1"
    assert "503" in client.log and "database is locked" in client.log
    client.publish("widgets", "third")
    contents = [e.findtext("a:content", namespaces=ATOM_NS) for e in client.get("/feed=widgets").entries()]
    assert contents == ["first", "third"]


def test_default_database_folder_that_cannot_be_created_is_a_clear_start_up_error(tmp_path):
    # /proc refuses new folders even to root: like /var/www/.local for www-data on Debian.
    env = {**cgi_env(tmp_path), "XDG_DATA_HOME": "/proc/atommq"}
    del env["ATOMMQ_DATABASE_URL"]
    done = subprocess.run([str(CGI_SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert parse_cgi_output(done.stdout.encode()).status == 500
    assert "cannot create the default folder '/proc/atommq/atommq'" in done.stderr
    assert "ATOMMQ_DATABASE_URL" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.http
def test_debug_log_names_the_headers_that_arrived_but_never_their_values(make_client):
    client = make_client(log_level="DEBUG")
    client.request("GET", "/", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    request = next(line for line in client.log.splitlines() if "GET '/' from" in line)
    assert "Authorization" in request.partition("headers: ")[2].split(", ")
    assert "YWxpY2U6c2VjcmV0" not in client.log


@pytest.mark.parametrize("transport", ["wsgi", "cgi", "fastcgi"])
@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://atommq@127.0.0.1:9/atommq", "mysql+pymysql://atommq@127.0.0.1:9/atommq"],
    ids=["postgresql", "mariadb"],
)
def test_unreachable_database_server_is_503_with_retry_after_and_nothing_is_half_done(make_client, url):
    client = make_client(database_url=url)  # port 9: nothing listens there
    response = client.post("/feed=widgets", ENTRY)
    assert response.status == 503
    assert response.headers["retry-after"] == "1"
    assert "try again" in response.text
    assert "Connection refused" in client.log  # the reason, for the operator


@pytest.mark.parametrize("transport", ["wsgi"])
@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"], ids=["postgresql", "mariadb"])
def test_database_server_that_never_answers_is_503_after_the_connect_timeout(make_client, scheme):
    """A server that accepts the connection and then says nothing (hung, or a firewall that
    swallows packets): the publisher gets a 503 after the connect timeout (PostgreSQL, 5 s) or
    database_timeout (MariaDB, 30 s by default; 6 s here), not a request hanging for ever."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever answers
    try:
        url = f"{scheme}://atommq@127.0.0.1:{silent.getsockname()[1]}/atommq"
        client = make_client(database_url=url, database_timeout="6")
        started = time.monotonic()
        response = client.post("/feed=widgets", ENTRY)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert response.status == 503
    assert response.headers["retry-after"] == "1"
    assert 4 < elapsed < 30, elapsed  # not 30 s and more: MariaDB's wait is the setting's


def start_serve(tmp_path: Path, *arguments: str) -> tuple[subprocess.Popen[str], int]:
    """`python3 -m atommq serve --port 0`, and the port it took (from its first line)."""
    env = {**os.environ, "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db"}
    server = subprocess.Popen(
        [sys.executable, "-m", "atommq", "serve", *arguments],
        env=env,
        cwd=CGI_SCRIPT.parent.parent,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    line = server.stderr.readline()
    port = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if port is None:
        server.kill()
        pytest.fail(f"serve did not start: {line}{server.stderr.read()}")
    return server, int(port.group(1))


def raw_answer(port: int, request: bytes) -> bytes:
    """The server's answer to a request sent as is, on a connection kept open (as curl does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while True:
            head, _, body = answer.partition(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head)
            if length and len(body) >= int(length.group(1)):
                return answer
            chunk = connection.recv(65536)  # a hang is a socket.timeout, and the test fails
            if not chunk:
                return answer
            answer += chunk


@pytest.mark.parametrize(
    "headers, status, says",
    [
        (b"", b"400", b"the body is empty"),
        (b"Transfer-Encoding: chunked\r\n", b"411", b"send a Content-Length"),
    ],
    ids=["no-body", "chunked"],
)
def test_serve_answers_a_post_without_content_length_at_once(tmp_path, headers, status, says):
    """curl -X POST sends no body and no Content-Length, and keeps the connection open: the
    input never ends, so a server that is not CGI or FastCGI must not wait for its end."""
    server, port = start_serve(tmp_path, "--port", "0")
    try:
        answer = raw_answer(port, b"POST /atommq/feed=x HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")
        assert answer.split(b" ")[1] == status, answer
        assert says in answer
        assert b"Content-Type: text/plain" in answer
    finally:
        server.kill()
        server.wait()


def test_serve_on_a_port_in_use_says_which_and_what_to_do(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db"}
        done = atommq_command(env, "serve", "--port", str(port))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "--port" in done.stderr


def older_python() -> str | None:
    """A Python older than 3.11 on this machine, if there is one (pyenv's, say)."""
    found = glob.glob("/root/.pyenv/versions/3.[6-9].*/bin/python3") + glob.glob("/usr/bin/python3.[6-9]")
    return found[0] if found else None


@pytest.mark.parametrize("command", [[str(CGI_SCRIPT)], [str(FCGI_SCRIPT)], ["-m", "atommq", "check"]])
def test_an_older_python_is_told_it_is_too_old_not_given_a_traceback(command):
    need(older_python() is not None, "no Python older than 3.11 here (pyenv's 3.9, say)")
    python = str(older_python())
    done = subprocess.run(
        [python, *command], cwd=CGI_SCRIPT.parent.parent, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"AtomMQ needs Python 3.11 or newer; {python} is 3."), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("transport", ["wsgi"])
def test_two_apps_in_one_process_each_log_to_their_own_file(make_client):
    """As under a WSGI host that runs two AtomMQs, or in these tests: logging is not global."""
    broken, healthy = make_client(), make_client(log_level="INFO")
    healthy.publish("widgets", "x")
    broken.db_path.write_bytes(b"this is not a SQLite database, it is garbage" * 100)
    assert broken.get("/feed=widgets").status == 500
    assert "not a database" in broken.log
    assert "not a database" not in healthy.log and "published" in healthy.log
    assert "published" not in broken.log


@pytest.mark.parametrize("transport", ["wsgi", "fastcgi"])
def test_a_writer_that_waits_over_5_s_for_its_turn_is_503_and_the_turn_comes_back(client):
    """SQLite's writers take turns on a lock file beside the database (database.WriterTurns):
    one that another process keeps waiting gets a 503 after 5 s, and the next one its turn."""
    client.publish("widgets", "first")
    with open(f"{client.db_path}-writer", "rb") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # another process's writer, slow to finish
        started = time.monotonic()
        response = client.post("/feed=widgets", ENTRY)
        waited = time.monotonic() - started
        fcntl.flock(lock_file, fcntl.LOCK_UN)
    assert response.status == 503 and response.headers["retry-after"] == "1"
    assert 4.5 < waited < 30, waited
    assert "waited 5 s for a turn to write while another process's writer held it" in client.log
    assert client.post("/feed=widgets", ENTRY).status == 201
    assert len(client.whole_feed("widgets")) == 2
