"""The HTTP layer's limits (mlserve/server/transport/http1), against a real HttpServer on an ephemeral port
serving a tiny application (the `serve` fixture, conftest.py here; support/echohttp.py): the layer
knows nothing of models, so no TensorFlow is needed here.

Each test asserts what a client sees on the socket: the status line, the closed connection, the
answers still served to others. Timeouts are configured short so the tests are quick, but no test
asserts how long anything took."""
from __future__ import annotations

import hashlib
import socket
import time

from support.paths import DOCS


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _get(port: int, path: str = "/ok") -> bytes:
    with _connect(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return _read_all(s)


def test_long_request_line_is_414_and_closed(serve) -> None:
    _, server = serve(max_request_line_bytes=1024)
    with _connect(server.port) as s:
        s.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 414 ")
    assert b"Connection: close" in answer
    assert _get(server.port).startswith(b"HTTP/1.1 200 ")


def test_large_headers_are_431_and_others_served(serve) -> None:
    _, server = serve(max_header_bytes=4096, max_request_line_bytes=1024)
    with _connect(server.port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        # stream a header far past the limit, in pieces, as an attacker would
        try:
            for _ in range(64):
                s.sendall(b"b" * 16384)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert _get(server.port).startswith(b"HTTP/1.1 200 ")


def test_late_headers_are_408_and_closed(serve) -> None:
    _, server = serve(header_timeout=1.0)
    with _connect(server.port) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_idle_keepalive_connection_is_closed(serve) -> None:
    _, server = serve(idle_timeout=1.0)
    with _connect(server.port) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        rest = _read_all(s)  # the server closes the idle connection
    assert first.startswith(b"HTTP/1.1 200 ") and rest == b""


def test_connections_past_the_maximum_are_refused_and_the_rest_served(serve) -> None:
    app, server = serve(max_connections=3)
    held = [_connect(server.port) for _ in range(3)]
    try:
        for s in held:  # make sure each is accepted before the next test connection
            s.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        with _connect(server.port) as extra:
            extra.sendall(b"GET /extra HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_all(extra) == b""  # closed at accept, nothing answered
        for s in held:  # the connections already open are still served
            s.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert server.server.http.refused >= 1
    finally:
        for s in held:
            s.close()


def test_backpressure_stops_reading_until_answers_are_taken(serve) -> None:
    app, server = serve(max_unsent_bytes=64 * 1024, max_pipeline=10000)
    n = 300
    with _connect(server.port) as s:
        s.sendall(b"GET /big/50000 HTTP/1.1\r\nHost: x\r\n\r\n" * n)  # 15 MB of answers, unread
        time.sleep(1.0)
        handled_while_unread = app.handled
        data = b""
        while data.count(b"HTTP/1.1 200 ") < n:  # everything is answered once the client reads
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    assert handled_while_unread < n  # the server stopped taking requests it could not send
    assert data.count(b"HTTP/1.1 200 ") == n and app.handled == n


def test_head_answer_has_no_body(serve) -> None:
    _, server = serve()
    with _connect(server.port) as s:
        s.sendall(b"HEAD /abc HTTP/1.1\r\nHost: x\r\n\r\nGET /def HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = _read_all(s)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 4" in head
    assert rest.startswith(b"HTTP/1.1 200 ")  # the next answer follows the HEAD's head directly
    assert rest.endswith(b"/def")


def test_http09_request_gets_an_answer(serve) -> None:
    _, server = serve()
    with _connect(server.port) as s:
        s.sendall(b"GET /\r\n")
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_inflight_byte_budget_is_429(serve) -> None:
    _, server = serve(max_inflight_bytes=1_000_000)
    with _connect(server.port) as held:
        # 700 kB of a body held in flight (the rest never comes)
        held.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n" + b"1" * 700000)
        time.sleep(0.5)
        with _connect(server.port) as s:
            s.sendall(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 500000\r\n\r\n")
            answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 429 ")
    time.sleep(0.5)  # the held connection is gone: its bytes are released
    with _connect(server.port) as a:
        a.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 600000\r\n\r\n" + b"1" * 600000)
        assert a.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_body_in_many_chunks_arrives_whole(serve) -> None:
    """A Content-Length body read in many pieces is filled into one buffer: same bytes out."""
    _, server = serve()
    body = bytes(range(256)) * 40000  # 10 MB, arriving in many reads
    with _connect(server.port) as s:
        s.sendall(f"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for i in range(0, len(body), 1 << 20):
            s.sendall(body[i:i + (1 << 20)])
        s.sendall(b"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        answer = _read_all(s)
    assert answer.count(b"HTTP/1.1 200 ") == 2
    assert hashlib.sha256(body).hexdigest().encode() in answer
    assert hashlib.sha256(b"abc").hexdigest().encode() in answer


def test_budget_is_reserved_at_the_headers_and_the_body_discarded(serve) -> None:
    """A request's cost (body_cost_factor x Content-Length) is reserved when its headers arrive:
    one that does not fit is answered 429 before its body is read, and a client that goes on
    sending the whole body still reads the 429 (the body is read and dropped), then the close."""
    _, server = serve(max_inflight_bytes=10_000_000, body_cost_factor=4)
    with _connect(server.port) as held:
        held.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"1" * 1000)
        time.sleep(0.3)  # 8 MB reserved for it, though only 1 kB has come
        with _connect(server.port) as s:
            s.sendall(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            early = s.recv(65536)  # before any of its body was sent
            s.sendall(b"2" * 1_000_000)
            rest = _read_all(s)
        assert early.startswith(b"HTTP/1.1 429 ") and b"Connection: close" in early
        assert b"in flight" in early + rest
        small = _get(server.port)  # a small request still fits
        assert small.startswith(b"HTTP/1.1 200 ")
        held.sendall(b"1" * 1_999_000)
        assert held.recv(65536).startswith(b"HTTP/1.1 200 ")
    time.sleep(0.3)
    with _connect(server.port) as a:  # everything was released
        a.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2400000\r\n\r\n" + b"1" * 2400000)
        assert a.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_every_limit_flag_is_documented() -> None:

    from mlserve.server.flags import EXTENSIONS

    text = (DOCS / "security.md").read_text()
    limits = {f for f in EXTENSIONS if f.startswith(("http_", "max_")) or f.startswith("allow")}
    assert limits and all(f"`--{flag}" in text for flag in limits), sorted(f for f in limits if f"`--{f}" not in text)
