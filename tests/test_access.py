"""Access control: users in a file that `atommq users` manages, HTTP Basic logins, and [read] /
[publish] rules in the INI file; 401 for no login or a wrong one, 403 for a user without the
right; neither tells whether the feed exists. In-process, under CGI and under FastCGI.
"""

import base64
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

import webservers
from atommq import config
from atommq.errors import ConfigError

EVERY_GATEWAY = pytest.mark.parametrize("transport", ["wsgi", "cgi", "fastcgi"])
ROOT = Path(__file__).resolve().parent.parent
RULES = """
[publish]
alerts.* = cron
public = cron

[read]
public = @anyone
status = @users
* = alice
"""
PASSWORDS = {"cron": "cron-secret-1", "alice": "alice-secret-1", "bob": "bob-secret-1"}
ENTRY = "<entry><content>disk full</content></entry>"


def atommq_users(*args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atommq", "users", *args],
        input=password + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def login(user: str, password: str | None = None) -> dict[str, str]:
    token = f"{user}:{PASSWORDS[user] if password is None else password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(token).decode()}


def with_rules(
    make_client, tmp_path, rules: str, users: tuple[str, ...] = ("cron", "alice"), **settings: str
):
    """A client whose server has these access `rules` (INI sections) and `users` (passwords
    from PASSWORDS) in its users file."""
    path = tmp_path / "users"
    for name in users:
        if not path.exists() or name not in path.read_text():
            assert atommq_users("add", name, "--file", str(path), password=PASSWORDS[name]).returncode == 0
    ini = tmp_path / f"atommq-{len(list(tmp_path.glob('atommq-*.ini')))}.ini"
    ini.write_text(f"[atommq]\nusers_file = {path}\n{rules}")
    return make_client(config=str(ini), **settings)


@pytest.fixture
def locked(make_client, tmp_path):
    users = tmp_path / "users"
    for name, password in PASSWORDS.items():
        assert atommq_users("add", name, "--file", str(users), password=password).returncode == 0
    ini = tmp_path / "atommq.ini"
    ini.write_text(f"[atommq]\nusers_file = {users}\n{RULES}")
    return make_client(config=str(ini))


def post(client, feed: str, headers: dict[str, str], server_may_refuse: bool = False):
    return client.request(
        "POST",
        f"/feed={feed}",
        ENTRY.encode(),
        {"Content-Type": "application/atom+xml", **headers},
        server_may_refuse=server_may_refuse,
    )


@EVERY_GATEWAY
def test_who_may_publish_and_read_follows_the_rules(locked):
    assert post(locked, "alerts.disk", login("cron")).status == 201
    assert locked.request("GET", "/feed=alerts.disk", headers=login("alice")).status == 200
    assert len(locked.request("GET", "/feed=alerts.disk", headers=login("alice")).entries()) == 1
    assert post(locked, "public", login("cron")).status == 201
    assert len(locked.get("/feed=public").entries()) == 1  # anyone reads "public", no login
    assert locked.request("GET", "/feed=status", headers=login("bob")).status == 404  # any user


@EVERY_GATEWAY
def test_no_login_is_401_with_a_basic_challenge_and_nothing_is_stored(locked):
    response = post(locked, "alerts.disk", {})
    assert response.status == 401
    assert response.headers["www-authenticate"] == 'Basic realm="AtomMQ", charset="UTF-8"'
    assert "log in to publish feed 'alerts.disk'" in response.text
    assert locked.get("/feed=alerts.disk").status == 401  # reading needs alice
    assert locked.request("GET", "/feed=alerts.disk", headers=login("alice")).status == 404


@EVERY_GATEWAY
def test_a_user_without_the_right_is_403_and_nothing_is_stored(locked):
    response = post(locked, "alerts.disk", login("alice"))
    assert response.status == 403
    assert response.text == "user 'alice' may not publish feed 'alerts.disk'\n"
    assert locked.request("GET", "/feed=alerts.disk", headers=login("alice")).status == 404


@EVERY_GATEWAY
def test_refusals_do_not_tell_whether_the_feed_exists(locked):
    entry = post(locked, "alerts.disk", login("cron")).headers["location"].split("/atommq")[1]
    for user, status in ((None, 401), ("cron", 403)):
        headers = login(user) if user else {}
        there = locked.request("GET", "/feed=alerts.disk", headers=headers)
        not_there = locked.request("GET", "/feed=alerts.nothing", headers=headers)
        assert there.status == not_there.status == status
        assert there.text.replace("disk", "X") == not_there.text.replace("nothing", "X")
        assert {k: v for k, v in there.headers.items() if k not in ("date", "content-length")} == {
            k: v for k, v in not_there.headers.items() if k not in ("date", "content-length")
        }
        assert locked.request("GET", entry, headers=headers).status == status
        assert locked.request("GET", entry.replace("disk", "nothing"), headers=headers).status == status


@EVERY_GATEWAY
def test_a_wrong_password_is_401_and_logged_with_the_address_but_never_the_password(locked):
    response = post(locked, "alerts.disk", login("cron", "guess-guess"))
    assert response.status == 401 and response.text == "wrong user name or password\n"
    assert "www-authenticate" in response.headers
    assert post(locked, "alerts.disk", login("cron", "")).status == 401
    unknown = base64.b64encode(b"mallory:guess-guess").decode()
    assert post(locked, "public", {"Authorization": f"Basic {unknown}"}).status == 401
    assert locked.get("/feed=public", Authorization=f"Basic {unknown}").status == 401  # even where open
    assert "failed login as 'cron' from 127.0.0.1" in locked.log
    assert "failed login as 'mallory' from 127.0.0.1" in locked.log
    assert "guess-guess" not in locked.log and unknown not in locked.log
    assert locked.get("/feed=alerts.disk", Authorization="Basic alice-secret-1").status == 401  # no base64


@EVERY_GATEWAY
def test_the_service_document_lists_only_what_the_caller_may_read(locked):
    for feed in ("alerts.disk", "public"):
        assert post(locked, feed, login("cron")).status == 201

    def listed(headers: dict[str, str]) -> list[str]:
        service = locked.request("GET", "/", headers=headers)
        assert service.status == 200
        return sorted(t.text for t in service.xml().iter("{http://www.w3.org/2005/Atom}title") if t.text)

    assert listed(login("alice")) == ["AtomMQ", "alerts.disk", "public"]  # the workspace, 2 feeds
    assert listed({}) == listed(login("cron")) == ["AtomMQ", "public"]


@EVERY_GATEWAY
def test_users_added_and_removed_take_effect_without_a_restart(locked, tmp_path):
    users = str(tmp_path / "users")
    assert locked.get("/feed=status", Authorization=login("bob")["Authorization"]).status == 404
    assert atommq_users("remove", "bob", "--file", users).returncode == 0
    assert locked.request("GET", "/feed=status", headers=login("bob")).status == 401
    PASSWORDS["dave"] = "dave-secret-1"
    try:
        assert atommq_users("add", "dave", "--file", users, password="dave-secret-1").returncode == 0
        assert locked.request("GET", "/feed=status", headers=login("dave")).status == 404
        assert atommq_users("passwd", "dave", "--file", users, password="dave-secret-2").returncode == 0
        assert locked.request("GET", "/feed=status", headers=login("dave")).status == 401
        assert locked.request("GET", "/feed=status", headers=login("dave", "dave-secret-2")).status == 404
    finally:
        del PASSWORDS["dave"]


@EVERY_GATEWAY
def test_a_trusted_web_server_login_is_taken_without_a_password(make_client, tmp_path):
    ini = tmp_path / "atommq.ini"
    ini.write_text(f"[atommq]\ntrust_remote_user = yes\n{RULES}")
    client = make_client(config=str(ini))
    assert post(client, "alerts.disk", {}).status == 401
    response = client.request(
        "POST",
        "/feed=alerts.disk",
        ENTRY.encode(),
        {"Content-Type": "application/atom+xml"},
        environ={"REMOTE_USER": "cron"},
    )
    assert response.status == 201
    assert client.request("GET", "/feed=alerts.disk", environ={"REMOTE_USER": "bob"}).status == 403


@EVERY_GATEWAY
def test_without_rules_logins_are_not_looked_at(client):
    # Behind a web server's own login, with trust_remote_user off: everything stays open.
    assert post(client, "alerts.disk", login("cron", "anything")).status == 201


def test_the_users_file_keeps_only_salted_slow_hashes(locked, tmp_path):
    text = (tmp_path / "users").read_text()
    assert not any(password in text for password in PASSWORDS.values())
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert [line.split(":")[0] for line in lines] == ["cron", "alice", "bob"]
    assert all(line.split(":", 1)[1].startswith("$scrypt$16384:8:1$") for line in lines)
    assert len({line.split("$")[3] for line in lines}) == 3  # a salt of its own each
    assert (tmp_path / "users").stat().st_mode & 0o777 == 0o640


def test_bad_access_settings_stop_the_start_with_a_clear_error(tmp_path):
    ini = tmp_path / "atommq.ini"
    ini.write_text(f"[atommq]\n{RULES}")
    with pytest.raises(ConfigError, match="names users, but no one can log in"):
        config.load({"ATOMMQ_CONFIG": str(ini)})
    ini.write_text("[atommq]\n[read]\n* = @everyone\n")
    with pytest.raises(ConfigError, match="'@everyone' is neither a user name"):
        config.load({"ATOMMQ_CONFIG": str(ini)})
    ini.write_text("[atommq]\n[write]\n* = cron\n")
    with pytest.raises(ConfigError, match=r"unknown section \[write\]"):
        config.load({"ATOMMQ_CONFIG": str(ini)})


def test_cli_refuses_short_passwords_and_bad_names(tmp_path):
    users = str(tmp_path / "users")
    short = atommq_users("add", "eve", "--file", users, password="short")
    assert short.returncode == 1 and "at least 8 characters" in short.stderr
    bad = atommq_users("add", "@eve", "--file", users, password="long-enough")
    assert bad.returncode == 2 and "not allowed" in bad.stderr
    assert not Path(users).exists()


def shared_host_settings(client, ini: str, htaccess: str = "") -> Path:
    """What a shared-host user edits, on a running server: the INI file their .htaccess names
    (read again by each CGI request) and, for the web server's own login, the .htaccess."""
    server = client.web_server
    state = server.db_path.parent
    server.ini.write_text(f"[atommq]\nlog_file = {server.log_path}\n{ini}")
    if htaccess:
        with (server.folder / "htdocs" / ".htaccess").open("a") as file:
            file.write(htaccess)
    www = pwd.getpwnam(webservers.WWW_USER)
    for path in state.iterdir():
        os.chown(path, www.pw_uid, www.pw_gid)
    return state


@pytest.mark.parametrize("transport", ["apache-htaccess"])
def test_a_shared_host_user_switches_access_control_on_without_touching_the_web_server(client):
    assert client.publish("alerts.disk", "before").status == 201  # open, as by default
    state = client.web_server.db_path.parent
    for name in ("cron", "alice"):
        assert (
            atommq_users("add", name, "--file", str(state / "users"), password=PASSWORDS[name]).returncode
            == 0
        )
    shared_host_settings(client, f"users_file = {state}/users\n{RULES}")
    refused = post(client, "alerts.disk", {})
    assert refused.status == 401
    assert refused.headers["www-authenticate"] == 'Basic realm="AtomMQ", charset="UTF-8"'
    assert post(client, "alerts.disk", login("cron")).status == 201
    assert post(client, "alerts.disk", login("alice")).status == 403
    assert len(client.request("GET", "/feed=alerts.disk", headers=login("alice")).entries()) == 2
    assert client.get("/feed=alerts.disk").status == 401


@pytest.mark.parametrize("transport", ["apache-htaccess"])
def test_behind_the_web_servers_own_login_its_user_is_trusted(client):
    client.get("/")
    state = client.web_server.db_path.parent
    subprocess.run(["htpasswd", "-bc", str(state / "htpasswd"), "cron", "apache-pass-1"], check=True)
    subprocess.run(["htpasswd", "-b", str(state / "htpasswd"), "alice", "apache-pass-2"], check=True)
    login_by_apache = f"""
AuthType Basic
AuthName "AtomMQ"
AuthUserFile {state}/htpasswd
Require valid-user
"""
    shared_host_settings(client, f"trust_remote_user = yes\n{RULES}", login_by_apache)
    assert post(client, "alerts.disk", login("cron", "apache-pass-1")).status == 201
    assert post(client, "alerts.disk", login("alice", "apache-pass-2")).status == 403  # our rules
    # Apache asks everyone to log in first, and answers a wrong login itself (in HTML).
    assert client.request("GET", "/feed=public", server_may_refuse=True).status == 401
    assert post(client, "alerts.disk", login("cron", "wrong-pass"), server_may_refuse=True).status == 401
    assert "failed login" not in client.log  # Apache refused it; AtomMQ never saw it
