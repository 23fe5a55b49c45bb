"""Property-based fuzzing (hypothesis) of the HTTP front end (mlserve/server/transport/http1) on a real
HttpServer: whatever bytes a client sends, it gets HTTP answers below 500 or a closed
connection, and the server keeps serving others. Bounded: a fixed number of examples, each
connection with a socket timeout, no per-example deadline."""
from __future__ import annotations

import re
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

tokens = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"get", b"", b"\x00", b"GET GET"])
urls = st.one_of(st.just(b"/v1/models/m:predict"), st.binary(max_size=40).map(lambda b: b"/" + b),
                 st.integers(0, 5000).map(lambda n: b"/" + b"a" * n))
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"", b"HTTP/1.1x", b"http/1.1"])
header_names = st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Expect", b"Connection",
                                b"Upgrade", b"X", b""])
header_values = st.one_of(st.sampled_from([b"5", b"-1", b"99999999999999999999", b"chunked", b"100-continue",
                                           b"close", b"websocket", b""]), st.binary(max_size=30))
headers = st.lists(st.tuples(header_names, header_values), max_size=5).map(
    lambda hs: b"".join(n + b": " + v + b"\r\n" for n, v in hs))
requests_ = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda m, u, v, h, body: m + b" " + u + b" " + v + b"\r\n" + h + b"\r\n" + body,
              tokens, urls, versions, headers, st.binary(max_size=64)),
)
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (OSError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_http_front_end_answers_below_500_or_closes(serve) -> None:  # noqa: F811
    _, server = serve(max_request_line_bytes=2048, max_header_bytes=4096, header_timeout=2.0)

    @FUZZ
    @given(data=requests_)
    def check(data: bytes) -> None:
        answer = _exchange(server.port, data)
        for status in _STATUS.findall(answer):
            assert int(status) < 500, (data, answer[:200])
        if answer:
            assert answer.startswith(b"HTTP/1.1 "), (data, answer[:200])

    check()
    assert _exchange(server.port, b"GET /still HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(
        b"HTTP/1.1 200 ")
