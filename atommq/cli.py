"""The `atommq` command: `serve` runs a development server, `check` diagnoses an installation."""

import argparse
import socketserver
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from atommq import config
from atommq.errors import ConfigError


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def mount(app: Callable[..., Iterable[bytes]], prefix: str) -> Callable[..., Iterable[bytes]]:
    """Serve `app` under `prefix`, as a web server's alias would: SCRIPT_NAME=prefix."""

    def mounted(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        rest = path[len(prefix) :]
        if not path.startswith(prefix) or (rest and not rest.startswith("/")):
            return _plain(start_response, "404 Not Found", f"AtomMQ is at {prefix}/\n")
        if environ.get("HTTP_TRANSFER_ENCODING") and not environ.get("CONTENT_LENGTH"):
            # wsgiref's server cannot read a chunked body; a real web server can.
            return _plain(start_response, "411 Length Required", "send a Content-Length\n")
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = rest
        return app(environ, start_response)

    return mounted


def _plain(start_response: Any, status: str, text: str) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]


def serve(args: argparse.Namespace) -> int:
    from atommq.app import make_app

    app = make_app(config.load())
    prefix = "/" + args.prefix.strip("/") if args.prefix.strip("/") else ""
    server = make_server(
        args.host, args.port, mount(app, prefix), server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    print(
        f"AtomMQ on http://{args.host}:{server.server_port}{prefix}/ "
        f"({config.load().database_url}); Ctrl-C stops it",
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
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:
        print(f"atommq: {error}", file=sys.stderr)
        return 2
