"""The HTTP/2 transport (mlserve/server/transport/http2/) in-process, on a recording transport: flow control
both ways, frame splitting, CONTINUATION, padding, PING, limits, and a bounded fuzz of the frame
reader (whatever the bytes, the connection answers or closes; it never raises)."""
from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve.server.transport.http2 import frames as f
from support.h2inproc import _connection, _request


def test_send_side_flow_control_splitting_and_receive_window() -> None:
    conn, transport, server = _connection()
    encoder = hpack.Encoder()
    conn.data_received(f.settings({f.INITIAL_WINDOW_SIZE: 10}) + f.frame(f.PING, 0, 0, b"12345678"))
    sent = transport.frames()
    assert (f.SETTINGS, f.ACK, 0, b"") in sent and (f.PING, f.ACK, 0, b"12345678") in sent
    _request(conn, 1, b"a" * 100, encoder)
    sent = transport.frames()
    assert [k for k, *_ in sent] == [f.HEADERS, f.DATA] and len(sent[1][3]) == 10  # the stream's window
    conn.data_received(f.window_update(1, 50))
    assert [len(p) for k, _, _, p in transport.frames()] == [50]
    conn.data_received(f.window_update(1, 1000))
    rest = transport.frames()
    assert [k for k, *_ in rest] == [f.DATA, f.HEADERS] and len(rest[0][3]) == 40 and rest[1][1] & f.END_STREAM
    assert not conn.streams and server.budget.held == 0

    # a peer that takes 20 KB frames gets 40 KB in 2 frames of its size, 16 KB peers in 3
    conn.data_received(f.settings({f.INITIAL_WINDOW_SIZE: 1 << 20}) + f.window_update(0, 1 << 20))
    transport.frames()
    for size, count in ((16384, 3), (20000, 2)):
        conn.data_received(f.settings({f.MAX_FRAME_SIZE: size}))
        _request(conn, 3 if size == 16384 else 5, b"b" * 40000, encoder)
        data = [p for k, _, _, p in transport.frames() if k == f.DATA]
        assert len(data) == count and b"".join(data) == b"b" * 40000


def test_limits_refuse_streams_and_bodies() -> None:
    conn, transport, server = _connection(max_concurrent_streams=1, max_body_bytes=1000)
    encoder = hpack.Encoder()
    block = encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", "/x"), (":authority", "a")])
    conn.data_received(f.frame(f.HEADERS, f.END_HEADERS, 1, block) + f.frame(f.HEADERS, f.END_HEADERS, 3, block))
    assert (f.RST_STREAM, 0, 3, f.REFUSED_STREAM.to_bytes(4, "big")) in transport.frames()
    conn.data_received(f.frame(f.DATA, 0, 1, b"x" * 1500))
    sent = transport.frames()
    assert sent[0][0] == f.HEADERS and sent[0][1] & f.END_STREAM  # refused by the app
    assert (f.RST_STREAM, 0, 1, f.NO_ERROR.to_bytes(4, "big")) in sent and server.budget.held == 0
    conn.data_received(f.frame(f.DATA, f.END_STREAM, 1, b"late"))  # after our reset: ignored
    assert not transport.closed
    conn.data_received(f.frame(f.DATA, 0, 7, b"x"))  # an idle stream: a connection error
    assert transport.closed and transport.frames()[-1][0] == f.GOAWAY


_FRAME = st.tuples(st.integers(0, 10), st.integers(0, 255), st.sampled_from([0, 1, 2, 3, 5, 2**31 - 1]),
                   st.binary(max_size=64))


@settings(max_examples=300, deadline=None)
@given(st.lists(_FRAME, max_size=12), st.binary(max_size=64))
def test_fuzzed_frames_answer_or_close_never_raise(frames: list, tail: bytes) -> None:
    conn, transport, server = _connection(max_header_list_bytes=256)
    data = b"".join(f.frame(kind, flags, sid, payload) for kind, flags, sid, payload in frames) + tail
    for i in range(0, len(data), 7):  # in small reads, as a network delivers them
        conn.data_received(data[i:i + 7])
    conn.connection_lost(None)
    assert server.budget.held == 0 and not conn.streams
