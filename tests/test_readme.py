"""The README's recipes, run as a user runs them: what they copy, the Python they make, the
check they run as the web server's user. The README is the front door; these keep it true."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import webservers
from conftest import ROOT, need

README = (ROOT / "README.md").read_text("utf-8")
RECIPE = README.partition("**On a server of your own**")[2].partition("\n\n**")[0]


def recipe_command(step: int) -> str:
    """The command of a step of the server recipe: its line that is one code span."""
    item = re.search(rf"^{step}\. (.*?)(?=^\d+\. |\Z)", RECIPE, re.M | re.S)
    assert item is not None, f"the server recipe has no step {step}"
    commands = re.findall(r"^\s*`([^`]+)`\s*$", item.group(1), re.M)
    assert commands, f"step {step} of the server recipe gives no command on a line of its own"
    return str(commands[0])


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder that www-data can reach (pytest's tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="amqreadme", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def need_root_and_www_data() -> None:
    need(os.geteuid() == 0, "runs a command as www-data, which needs root")
    need(webservers.missing() is None, str(webservers.missing()))
    need(shutil.which("runuser") is not None, "runuser (util-linux) is not installed")


def test_the_readmes_virtual_environment_is_ignored_by_git():
    need((ROOT / ".git").exists(), "not a git checkout")
    venvs = re.findall(r"python3 -m venv (\.\S+) ", README)
    assert venvs, "the README no longer makes a venv in this folder"
    for venv in venvs:
        ignored = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", f"{venv}/bin/python3"])
        assert ignored.returncode == 0, f"{venv} would show in git status"


def test_the_server_recipe_copies_the_app_and_nothing_of_the_developers(shared_folder):
    command = recipe_command(1).replace("/srv/atommq", str(shared_folder / "atommq"))
    subprocess.run(["bash", "-c", command], cwd=ROOT, check=True)
    copied = shared_folder / "atommq"
    for needed in ("cgi-bin/atommq.cgi", "cgi-bin/atommq.fcgi", "atommq/app.py", "requirements.txt"):
        assert (copied / needed).is_file(), needed
    for private in (".venv", ".git", "tests", "bench"):
        assert not (copied / private).exists(), private


def test_the_server_recipes_python_can_be_run_by_the_web_servers_user(shared_folder):
    need_root_and_www_data()
    make_venv = recipe_command(2).partition(" && ")[0].replace("/srv/atommq", str(shared_folder))
    assert " -m venv " in make_venv, make_venv
    subprocess.run(["bash", "-c", make_venv + " --without-pip"], check=True)
    python = shared_folder / "venv" / "bin" / "python3"
    ran = subprocess.run(
        ["runuser", "-u", "www-data", "--", str(python), "-c", "print('ran')"], capture_output=True, text=True
    )
    assert ran.stdout == "ran\n", f"www-data cannot run the recipe's venv: {ran.stderr}"


def test_the_recipes_check_runs_as_the_web_servers_user(shared_folder):
    """Step 6, with the test venv and a copy of the app where the recipe has /srv/atommq; on a
    machine with no sudo, as this one."""
    need_root_and_www_data()
    python = webservers.www_python()
    app = webservers.deploy_app(python)
    try:
        data = shared_folder / "data"
        data.mkdir()
        shutil.chown(data, "www-data", "www-data")
        command = (
            recipe_command(6)
            .replace("/srv/atommq/venv/bin/python3", str(python))
            .replace("/srv/atommq", str(app))
            .replace("/var/lib/atommq", str(data))
        )
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(app, ignore_errors=True)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checking for user www-data" in done.stdout
    assert re.search(r"^ok +write: ", done.stdout, re.M), done.stdout


def test_the_readmes_shell_consumer_processes_every_message_in_order_and_retries_a_failure(tmp_path):
    """The script under **Consuming from a shell**, as a user copies it, against `python3 -m
    atommq serve`: it processes each message once, in order, waiting for the next; a message
    whose command fails is tried again, and none after it is processed first; the cursor file
    holds the last message processed."""
    need(shutil.which("jq") is not None and shutil.which("curl") is not None, "needs jq and curl")
    script = README.partition("**Consuming from a shell.**")[2].partition("```sh\n")[2].partition("```")[0]
    assert "./process-one-message" in script and "url=" in script, "the README's consumer changed shape"
    env = {**os.environ, "ATOMMQ_DATABASE_URL": f"sqlite:///{tmp_path}/atommq.db"}
    server = subprocess.Popen(
        [sys.executable, "-m", "atommq", "serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    consumer = None
    try:
        line = server.stderr.readline() if server.stderr else ""
        base = re.search(r"http://\S+/", line)
        assert base, line
        feed = base.group(0) + "feed=jobs"
        # The command: appends each message to a file; fails once, on "fail-once", for a retry.
        (tmp_path / "process-one-message").write_text(
            "#!/bin/sh\nbody=$(cat)\n"
            'if [ "$body" = fail-once ] && [ ! -e failed ]; then touch failed; exit 1; fi\n'
            'printf "%s\\n" "$body" >> processed\n'
        )
        (tmp_path / "process-one-message").chmod(0o755)
        copied = script.replace("https://example.org/atommq/feed=jobs", feed).replace(
            "$HOME/.jobs-cursor", str(tmp_path / "cursor")
        )
        copied = copied.replace("sleep 5", "sleep 0.5")  # the retry's pause, shortened
        (tmp_path / "consume.sh").write_text(copied)

        def publish(text: str) -> str:
            done = subprocess.run(
                ["curl", "-fsS", "-H", "Content-Type: text/plain", "--data-binary", text, feed],
                capture_output=True,
                text=True,
                check=True,
            )
            return re.search(r"<id>([^<]+)</id>", done.stdout).group(1)  # type: ignore[union-attr]

        ids = [publish(text) for text in ("one", "fail-once", "three")]
        consumer = subprocess.Popen(["sh", "consume.sh"], cwd=tmp_path, start_new_session=True)
        wait_for = time.monotonic() + 30
        while time.monotonic() < wait_for and (tmp_path / "processed").exists() is False:
            time.sleep(0.1)
        time.sleep(1.5)  # it now waits for a message
        ids.append(publish("four, published while it waits"))
        while time.monotonic() < wait_for and len(_lines(tmp_path / "processed")) < 4:
            time.sleep(0.1)
        assert _lines(tmp_path / "processed") == [
            "one",
            "fail-once",
            "three",
            "four, published while it waits",
        ]
        assert (tmp_path / "failed").exists()  # the failure happened, and was retried
        # The script saves the cursor just after the command's line: wait for it, not past it.
        cursor = tmp_path / "cursor"
        while time.monotonic() < wait_for and cursor.read_text().strip() != ids[-1]:
            time.sleep(0.05)
        assert cursor.read_text().strip() == ids[-1]
    finally:
        if consumer is not None:
            os.killpg(consumer.pid, signal.SIGKILL)
            consumer.wait()
        server.kill()
        server.wait()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
