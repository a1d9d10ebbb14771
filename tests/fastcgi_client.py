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


def _record(kind: int, content: bytes, request_id: int = 1) -> bytes:
    padding = -len(content) % 8
    return _HEADER.pack(_VERSION, kind, request_id, len(content), padding) + content + b"\0" * padding


def _length(n: int) -> bytes:
    return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)


def _params(params: Mapping[str, str | bytes]) -> bytes:
    out = bytearray()
    for name, value in params.items():
        key = name.encode("latin-1")
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        out += _length(len(key)) + _length(len(data)) + key + data
    return bytes(out)


def _stream(kind: int, data: bytes) -> bytes:
    records = [_record(kind, data[i : i + 65535]) for i in range(0, len(data), 65535)]
    return b"".join(records) + _record(kind, b"")


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    buffer = bytearray()
    while len(buffer) < n:
        chunk = sock.recv(n - len(buffer))
        if not chunk:
            raise ConnectionError("FastCGI server closed the connection mid-record")
        buffer += chunk
    return bytes(buffer)


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
        begin = struct.pack("!HB5x", _RESPONDER, 0)
        sock.sendall(_record(BEGIN_REQUEST, begin) + _stream(PARAMS, _params(params)) + _stream(STDIN, body))
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
