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


def _closed(s: socket.socket) -> bool:
    s.settimeout(5)
    return _read_all(s) == b""


def test_at_the_connection_cap_idle_connections_are_evicted_never_used_first(serve) -> None:
    """Past `max_connections` the server closes the oldest connection that never began a
    request, else the one idle longest, so a flood of idle connections cannot lock out new
    clients; connections with a request in flight are never closed for it."""
    _, server = serve(max_connections=3)
    used = [_connect(server.port) for _ in range(2)]
    try:
        for s in used:
            s.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        unused = _connect(server.port)
        time.sleep(0.2)
        # the cap is reached: a new client is served, and the never-used connection made room
        assert _get(server.port, "/new").startswith(b"HTTP/1.1 200 ")
        assert _closed(unused)
        for s in used:  # the used, idle ones are still served
            s.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        # then the one idle longest goes: used[0] answered before used[1] last time
        time.sleep(0.1)
        used[1].sendall(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n")
        assert used[1].recv(65536).startswith(b"HTTP/1.1 200 ")
        third = _connect(server.port)
        third.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
        assert third.recv(65536).startswith(b"HTTP/1.1 200 ")
        assert _get(server.port, "/fourth").startswith(b"HTTP/1.1 200 ")  # evicts used[0]
        assert _closed(used[0])
        assert server.server.http.evicted >= 2
        third.close()
    finally:
        for s in used:
            s.close()


def test_connections_past_the_maximum_are_refused_when_all_are_in_flight(serve) -> None:
    _, server = serve(max_connections=3)
    held = [_connect(server.port) for _ in range(3)]
    try:
        for s in held:  # each with a request in flight: its body still arriving
            s.sendall(b"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        time.sleep(0.3)
        with _connect(server.port) as extra:
            extra.sendall(b"GET /extra HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_all(extra) == b""  # closed at accept, nothing answered
        for s in held:  # the requests in flight complete and are answered
            s.sendall(b"cd")
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
            try:  # its bytes arrive past the budget: 429 once they do
                s.sendall(b"2" * 500000)
            except (BrokenPipeError, ConnectionResetError):
                pass
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


def test_announced_bodies_take_nothing_until_their_bytes_arrive(serve) -> None:
    """A Content-Length alone reserves nothing: two clients that announce bodies twice the budget
    and send almost nothing do not refuse a third, whose body arrives and is served."""
    _, server = serve(max_inflight_bytes=10_000_000, body_cost_factor=4)
    held = [_connect(server.port) for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"1" * 1000)
        time.sleep(0.3)
        assert server.server.http.budget.held == 2000  # what arrived, not 2 x 4 x 2 MB (16 MB)
        with _connect(server.port) as s:
            s.sendall(b"POST /sha HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n"
                      + b"2" * 1_000_000)
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert hashlib.sha256(b"2" * 1_000_000).hexdigest().encode() in answer
        held[0].sendall(b"1" * 1_999_000)  # the rest comes: served, then released
        assert held[0].recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert server.server.http.budget.held == 0


def test_arrived_bytes_past_the_budget_are_429_and_the_body_discarded(serve) -> None:
    """The bytes that have arrived, and the decode's share once a body is complete
    (body_cost_factor - 1 times it), are what a request holds: past the budget the request is
    answered 429, the rest of its body read and dropped, then the connection closed."""
    _, server = serve(max_inflight_bytes=10_000_000, body_cost_factor=4)
    with _connect(server.port) as held:
        held.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"1" * 1_500_000)
        time.sleep(0.3)  # 1.5 MB held
        with _connect(server.port) as s:
            # 3 MB arrive (4.5 MB held: fits), then its decode (3 x 3 MB more) does not: 429
            s.sendall(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n" + b"2" * 3_000_000)
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 429 ") and b"Connection: close" in answer
        assert b"in flight" in answer
        assert _get(server.port).startswith(b"HTTP/1.1 200 ")  # a small request still fits
        held.sendall(b"1" * 500_000)  # complete: 4 x 2 MB fits
        assert held.recv(65536).startswith(b"HTTP/1.1 200 ")
    time.sleep(0.3)
    assert server.server.http.budget.held == 0
    with _connect(server.port) as a:  # everything was released
        a.sendall(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2400000\r\n\r\n" + b"1" * 2400000)
        assert a.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_host_names_other_than_local_are_421_when_asked(serve) -> None:
    """DNS rebinding: a page whose site resolves to 127.0.0.1 sends its own name as Host."""
    from mlserve.server.transport.http1.config import LOCAL_HOSTS

    _, server = serve(allowed_hosts=LOCAL_HOSTS | {"models.internal"})
    for host in ("localhost", "LOCALHOST:8501", "127.0.0.1:1", "[::1]", "[::1]:8501", "models.internal:80"):
        with _connect(server.port) as s:
            s.sendall(f"GET /ok HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert _read_all(s).startswith(b"HTTP/1.1 200 "), host
    with _connect(server.port) as s:  # HTTP/1.0 without a Host: nothing to check
        s.sendall(b"GET /ok HTTP/1.0\r\n\r\n")
        assert _read_all(s).startswith(b"HTTP/1.1 200 ")
    for host in ("attacker.example", "attacker.example:8501", "localhost.attacker.example", "127.0.0.2"):
        with _connect(server.port) as s:
            s.sendall(f"GET /ok HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            answer = _read_all(s)
        assert answer.startswith(b"HTTP/1.1 421 ") and b"Connection: close" in answer, host
        assert b"--allowed_hosts" in answer


def test_host_check_applies_only_when_bound_to_loopback() -> None:
    from mlserve.server.frontends.rest.routes import allowed_hosts

    assert allowed_hosts("127.0.0.1", "") == {"localhost", "127.0.0.1", "[::1]"}
    assert allowed_hosts("::1", "a.example, B.example:80") >= {"a.example", "b.example", "[::1]"}
    assert allowed_hosts("localhost", "*") is None
    for bind in ("0.0.0.0", "::", "192.168.1.5", "my-host"):
        assert allowed_hosts(bind, "") is None  # TF Serving's behaviour: no check


def test_every_limit_flag_is_documented() -> None:

    from mlserve.server.flags import EXTENSIONS

    text = (DOCS / "security.md").read_text()
    limits = {f for f in EXTENSIONS if f.startswith(("http_", "max_")) or f.startswith("allow")}
    assert limits and all(f"`--{flag}" in text for flag in limits), sorted(f for f in limits if f"`--{f}" not in text)
