"""The `atommq` command: `serve` runs a development server, `check` diagnoses an installation,
`users` manages the users file of HTTP Basic logins; `publish` and `consume` are the client
(publish.py, consume.py and its cursors.py), which import nothing of the server's: no dataset,
no SQLAlchemy."""

import argparse
import getpass
import socketserver
import sys
from collections.abc import Callable, Iterable
from typing import Any

from atommq import config
from atommq.errors import ConfigError, plain_text


def mount(app: Callable[..., Iterable[bytes]], prefix: str) -> Callable[..., Iterable[bytes]]:
    """Serve `app` under `prefix`, as a web server's alias would: SCRIPT_NAME=prefix."""

    def mounted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        rest = path[len(prefix) :]
        if not path.startswith(prefix) or (rest and not rest.startswith("/")):
            return plain_text(start_response, "404 Not Found", f"AtomMQ is at {prefix}/")
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = rest
        return app(environ, start_response)

    return mounted


def serve(args: argparse.Namespace) -> int:
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from atommq.app import make_app

    class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class _QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    settings = config.load()
    app = make_app(settings, config.configure_logging(settings))
    prefix = "/" + args.prefix.strip("/") if args.prefix.strip("/") else ""
    try:
        server = make_server(
            args.host,
            args.port,
            mount(app, prefix),
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
    except OSError as error:  # the port is taken, the address is not this machine's, ...
        print(
            f"atommq: cannot listen on {args.host}:{args.port}: {error.strerror or error}; "
            "stop what uses it, or choose another port with --port (--port 0 takes any free one)",
            file=sys.stderr,
        )
        return 1
    print(
        f"AtomMQ on http://{args.host}:{server.server_port}{prefix}/ "
        f"({settings.database_url}); Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def check(args: argparse.Namespace) -> int:
    from atommq.check import failed, render, run_checks
    from atommq.permissions import find_user

    try:
        user = find_user(args.user)
    except KeyError:
        print(f"atommq: no user named {args.user!r}", file=sys.stderr)
        return 2
    results = run_checks(user=user)
    sys.stdout.write(render(results))
    return 1 if failed(results) else 0


def users(args: argparse.Namespace) -> int:
    from atommq import users as users_file

    path = args.file or config.load().users_file
    if not path:
        print(
            "atommq: which users file? Give --file PATH, or set users_file in your settings", file=sys.stderr
        )
        return 2
    try:
        known = users_file.read(path)
        if args.action == "list":
            print("\n".join(known) if known else f"no users in {path}")
            return 0
        if not users_file.NAME.match(args.name):
            print(
                f"atommq: user name {args.name!r} is not allowed; use {users_file.NAME_RULE}", file=sys.stderr
            )
            return 2
        if args.action == "remove":
            if known.pop(args.name, None) is None:
                print(f"atommq: no user {args.name!r} in {path}", file=sys.stderr)
                return 1
        else:
            if args.action == "add" and args.name in known:
                print(
                    f"atommq: user {args.name!r} exists; change the password with: users passwd",
                    file=sys.stderr,
                )
                return 1
            if args.action == "passwd" and args.name not in known:
                print(f"atommq: no user {args.name!r} in {path}; add one with: users add", file=sys.stderr)
                return 1
            password = _new_password()
            if password is None:
                return 1
            known[args.name] = users_file.hash_password(password)
        users_file.write(path, known)
    except users_file.UsersFileError as error:
        print(f"atommq: {error}", file=sys.stderr)
        return 1
    print(f"{args.action}: {args.name} ({path})")
    return 0


def _feeds(args: argparse.Namespace) -> int:
    from atommq import admin  # a server verb: it needs the server's dependencies, the client verbs must not

    if args.action == "delete":
        return admin.delete_feed(args.name, args.yes)
    return admin.feeds(args.json)


def _prune(args: argparse.Namespace) -> int:
    from atommq import admin

    return admin.prune(args.dry_run)


def _new_password() -> str | None:
    """Asked twice at a terminal; else the first line of standard input (for scripts)."""
    if sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            print("atommq: the two passwords differ; nothing changed", file=sys.stderr)
            return None
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        print("atommq: a password needs at least 8 characters; nothing changed", file=sys.stderr)
        return None
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atommq", description="AtomMQ, a message bus over AtomPub")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run a development web server (not for production)")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    run.add_argument("--port", type=int, default=8080, help="port to listen on (8080; 0: any free)")
    run.add_argument("--prefix", default="/atommq", help="URL path AtomMQ is mounted at (/atommq)")
    run.set_defaults(func=serve)
    diagnose = commands.add_parser(
        "check", help="say what stops a web server from running AtomMQ here, and what to do"
    )
    diagnose.add_argument("--user", help="the web server's user, e.g. www-data (default: you)")
    diagnose.set_defaults(func=check)
    manage = commands.add_parser("users", help="add, remove or list the users who may log in")
    manage.add_argument("action", choices=("add", "remove", "passwd", "list"))
    manage.add_argument("name", nargs="?", default="", help="user name (not for list)")
    manage.add_argument("--file", help="the users file (default: the users_file setting)")
    manage.set_defaults(func=users)
    remove = commands.add_parser(
        "prune",
        help="remove the messages that the [retention] rules no longer keep (for cron)",
        epilog="example, in a crontab: 17 * * * * ATOMMQ_CONFIG=/etc/atommq.ini python3 -m atommq prune",
    )
    remove.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    remove.set_defaults(func=_prune)
    listing = commands.add_parser(
        "feeds",
        help="list the feeds: messages, oldest, newest, size, named consumers and their lag",
        description="Reads the database directly (the settings' database_url), on the server.",
    )
    listing.add_argument("--json", action="store_true", help="as one JSON document, for jq")
    actions = listing.add_subparsers(dest="action")
    deleting = actions.add_parser("delete", help="delete a feed, its messages and its consumers")
    deleting.add_argument("name", help="the feed's name")
    deleting.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")
    listing.set_defaults(func=_feeds)
    _add_client_verbs(commands)
    given = sys.argv[1:] if argv is None else argv
    # consume's COMMAND: everything after "--", its own options included.
    program = given[given.index("--") + 1 :] if "--" in given else []
    args = parser.parse_args(given[: given.index("--")] if "--" in given else given)
    args.program = program
    if program and args.command != "consume":
        parser.error("only consume runs a COMMAND (after --)")
    from atommq.client import ClientError

    try:
        return int(args.func(args))
    except ConfigError as error:
        print(f"atommq: {error}", file=sys.stderr)
        return 2
    except ClientError as error:
        print(f"atommq {args.command}: {error.line}", file=sys.stderr)
        return error.code


def _add_client_verbs(commands: Any) -> None:
    from atommq import consume, publish, tail

    sender = commands.add_parser(
        "publish",
        help="publish a message to a feed, retrying without ever storing it twice",
        description="Publish one message. Prints its id. Exit codes: 0 stored, 65 refused (the "
        "server's reason on stderr), 77 login refused, 75 gave up on a passing failure.",
        epilog="example: df -h / | atommq publish https://example.org/atommq/feed=disk - --title df",
    )
    publish.add_arguments(sender)
    sender.set_defaults(func=publish.run)
    reader = commands.add_parser(
        "consume",
        help="run a command for each new message of a feed, keeping the cursor in a file or on the server",
        description="For each message after the cursor (in FILE, or the server's consumer NAME), oldest "
        "first, run COMMAND with the content on its stdin (ATOMMQ_ID, ATOMMQ_TITLE, ... in its "
        "environment), then save the message's id. Exit codes: 0 done, 1 COMMAND failed, 3 another "
        "run holds FILE or moved consumer NAME, "
        "4 the server does not know the cursor, 65 refused, 77 login refused, 75 gave up.",
        epilog="example: atommq consume https://example.org/atommq/feed=jobs --state ~/jobs.cursor "
        "--once -- ./process-one-job",
    )
    consume.add_arguments(reader)
    reader.set_defaults(func=consume.run)
    watcher = commands.add_parser(
        "tail",
        help="show a feed's newest messages, one line each, and (-f) new ones as they come",
        epilog="example: atommq tail -f https://example.org/atommq/feed=alerts",
    )
    tail.add_arguments(watcher)
    watcher.set_defaults(func=tail.run)
