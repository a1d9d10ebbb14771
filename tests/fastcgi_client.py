"""A minimal FastCGI client (responder role), for the tests and the benchmark.

flup's own client (flup.client) is broken on Python 3, and spawning cgi-fcgi per request
would time the spawn, not the server.
"""

import socket
import struct
from collections.abc import Mapping

_VERSION = 1
BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
_RESPONDER = 1
_HEADER = struct.Struct("!BBHHBx")


def record(kind: int, content: bytes, request_id: int = 1) -> bytes:
    padding = -len(content) % 8
    return _HEADER.pack(_VERSION, kind, request_id, len(content), padding) + content + b"\0" * padding


def _length(n: int) -> bytes:
    return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)


def encode_params(params: Mapping[str, str | bytes]) -> bytes:
    out = bytearray()
    for name, value in params.items():
        key = name.encode("latin-1")
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        out += _length(len(key)) + _length(len(data)) + key + data
    return bytes(out)


def stream(kind: int, data: bytes) -> bytes:
    records = [record(kind, data[i : i + 65535]) for i in range(0, len(data), 65535)]
    return b"".join(records) + record(kind, b"")


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < n:
        chunk = sock.recv(n - len(buffer))
        if not chunk:
            raise ConnectionError("FastCGI server closed the connection mid-record")
        buffer += chunk
    return bytes(buffer)


def meta_variables(
    method: str, path: str, query: str = "", headers: Mapping[str, str] | None = None, body: bytes = b""
) -> dict[str, str]:
    """The CGI meta-variables (RFC 3875 4.1) that a web server gives a CGI script or a FastCGI
    server for a request to AtomMQ mounted at /atommq on http://localhost. Header names become
    HTTP_* variables, but Content-Type, which is CONTENT_TYPE."""
    meta = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "/atommq",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_URI": "/atommq" + path + (f"?{query}" if query else ""),
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "atommq-tests",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        meta[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    if body:
        meta["CONTENT_LENGTH"] = str(len(body))
    return meta


def begin_request() -> bytes:
    """The record that opens a request in the responder role, the connection closed after it."""
    return record(BEGIN_REQUEST, struct.pack("!HB5x", _RESPONDER, 0))


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read the server's answer to the end of the request: (stdout, stderr)."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        _, kind, _, length, padding = _HEADER.unpack(_read_exactly(sock, _HEADER.size))
        content = _read_exactly(sock, length + padding)[:length]
        if kind == STDOUT:
            stdout += content
        elif kind == STDERR:
            stderr += content
        elif kind == END_REQUEST:
            return bytes(stdout), bytes(stderr)


def request(
    address: str | tuple[str, int],
    params: Mapping[str, str | bytes],
    body: bytes = b"",
    timeout: float = 30.0,
) -> tuple[bytes, bytes]:
    """Send one request; return (stdout, stderr) as the application wrote them."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(begin_request() + stream(PARAMS, encode_params(params)) + stream(STDIN, body))
        return read_response(sock)
