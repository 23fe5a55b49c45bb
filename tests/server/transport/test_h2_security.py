"""HTTP/2 hardening (issue #21): the HPACK decode cache against an independent decoder
(python-hyper `hpack`) on a real server with the official TF Serving stubs' messages; flood
limits, self-dependency, the SETTINGS window pass and per-stream receive windows in-process;
eviction at the connection cap on real sockets; zero-window clients and the send timeout on a
real server."""
from __future__ import annotations

import asyncio
from typing import Any

import hpack
import pytest
from tensorflow_serving.apis import get_model_status_pb2

from mlserve.server.transport.http2 import H2Config
from mlserve.server.transport.http2 import frames as f
from mlserve.server.transport.http2.server import H2Server
from support.h2client import RawH2, messages
from support.h2inproc import Echo, _connection
from support.servers import ServerProcess

STATUS_PATH = b"/tensorflow.serving.ModelService/GetModelStatus"


def _literal_path(value: bytes) -> bytes:
    """`:path` (static name index 4) as a literal with incremental indexing, no Huffman."""
    assert len(value) < 127
    return b"\x44" + bytes((len(value),)) + value


def _block(path: bytes) -> bytes:
    # :method POST, :scheme http (static 3, 6), then the path, then literals never indexed
    rest = b"".join(b"\x00" + bytes((len(k),)) + k + bytes((len(v),)) + v for k, v in
                    ((b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers")))
    return b"\x83\x86" + path + rest


def test_hpack_cache_follows_a_full_table_like_hpack_does(digits_server: ServerProcess) -> None:
    """Fill the 4,096-byte table with 48 entries of 84 bytes, insert GetModelStatus (evicting one:
    the entry count stays 48), a filler, the GetModelStatus block again byte for byte, then a block
    naming :path by index 62 (the newest entry). `hpack.Decoder` reads GetModelStatus there; so
    must the server."""
    fillers = [b"/f/%044d" % i for i in range(50)]
    assert len(fillers[0]) == len(STATUS_PATH) == 47
    blocks = [_block(_literal_path(p)) for p in fillers[:48]]
    x = _block(_literal_path(STATUS_PATH))
    blocks += [x, _block(_literal_path(fillers[48])), x, _block(b"\xbe")]
    reference = hpack.Decoder()
    decoded = [dict(reference.decode(b, raw=True)) for b in blocks]
    assert decoded[-1][b":path"] == STATUS_PATH

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "digits_model"
    client = RawH2(digits_server.grpc_port)
    try:
        for i, block in enumerate(blocks):
            sid = 2 * i + 1
            client.send(f.HEADERS, f.END_HEADERS, sid, block)
            client.message(sid, request.SerializeToString())
            answer = client.answer(sid)
            if decoded[i][b":path"] == STATUS_PATH:
                assert answer.status == "0", (i, answer.message)
                reply = get_model_status_pb2.GetModelStatusResponse.FromString(messages(answer.data)[0])
                assert reply.model_version_status[0].state == 30  # AVAILABLE
            else:
                assert answer.status == "12", (i, answer.message)  # UNIMPLEMENTED: the filler paths
    finally:
        client.close()


# -- in-process: the transport on a recording transport (tests/server/test_h2_transport.py's) ----




def _goaway(frames: list[tuple[int, int, int, bytes]]) -> int | None:
    return next((int.from_bytes(p[4:8], "big") for k, _, _, p in frames if k == f.GOAWAY), None)


def _open(conn: object, sid: int, encoder: hpack.Encoder) -> None:
    block = encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", "/x"), (":authority", "a")])
    conn.data_received(f.frame(f.HEADERS, f.END_HEADERS, sid, block))  # type: ignore[attr-defined]


def test_rapid_reset_is_cut_off_with_enhance_your_calm() -> None:
    conn, transport, server = _connection(max_client_resets=50)
    encoder = hpack.Encoder()
    for i in range(60):
        sid = 2 * i + 1
        _open(conn, sid, encoder)
        conn.data_received(f.frame(f.DATA, 0, sid, b"\x00\x00\x00\x00\x01x") + f.rst_stream(sid, f.CANCEL))
        if transport.closed:
            break
    assert transport.closed and i == 50
    assert _goaway(transport.frames()) == f.ENHANCE_YOUR_CALM
    conn.connection_lost(None)  # what asyncio calls after the close
    assert server.budget.held == 0


@pytest.mark.parametrize(("limit", "frame"), [
    ("max_pings", f.frame(f.PING, 0, 0, b"12345678")),
    ("max_settings", f.settings({f.MAX_FRAME_SIZE: 16384})),
    ("max_priority", f.frame(f.PRIORITY_FRAME, 0, 3, b"\x00\x00\x00\x01\x10")),
    ("max_unknown_frames", f.frame(0x42, 0, 0, b"??")),
    ("max_empty_data", f.frame(f.DATA, 0, 1, b"")),
    ("max_closed_stream_frames", f.window_update(1, 1)),
])
def test_each_flood_limit_closes_the_connection(limit: str, frame: bytes) -> None:
    conn, transport, _ = _connection(**{limit: 10})
    if limit in ("max_empty_data", "max_closed_stream_frames"):
        _open(conn, 1, hpack.Encoder())
        if limit == "max_closed_stream_frames":
            conn.data_received(f.rst_stream(1, f.CANCEL))
    transport.frames()
    # frames that come with real work get an allowance per stream opened (2 per stream here)
    allowed = 10 + (2 if limit == "max_closed_stream_frames" else 0)
    conn.data_received(frame * allowed)
    assert not transport.closed  # at the limit: still served
    conn.data_received(frame)
    assert transport.closed and _goaway(transport.frames()) == f.ENHANCE_YOUR_CALM


def test_pings_that_come_with_requests_are_allowed_one_per_stream() -> None:
    """A gRPC client's BDP pings come with its traffic: each stream opened allows one more."""
    conn, transport, _ = _connection(max_pings=10)
    encoder = hpack.Encoder()
    for i in range(50):
        _open(conn, 2 * i + 1, encoder)
        conn.data_received(f.frame(f.PING, 0, 0, b"12345678"))
    assert not transport.closed
    conn.data_received(f.frame(f.PING, 0, 0, b"12345678") * 11)
    assert transport.closed and _goaway(transport.frames()) == f.ENHANCE_YOUR_CALM


def test_thousands_of_initial_window_entries_apply_once() -> None:
    conn, transport, _ = _connection()
    encoder = hpack.Encoder()
    for i in range(100):
        _open(conn, 2 * i + 1, encoder)
    entries = [(f.INITIAL_WINDOW_SIZE, 1000 + i) for i in range(2730)]
    payload = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in entries)
    conn.data_received(f.frame(f.SETTINGS, 0, 0, payload))
    assert not transport.closed
    assert {s.window for s in conn.streams.values()} == {1000 + 2729}


def test_a_stream_depending_on_itself_is_a_protocol_error() -> None:
    for frame in (f.frame(f.PRIORITY_FRAME, 0, 5, b"\x00\x00\x00\x05\x10"),
                  f.frame(f.HEADERS, f.END_HEADERS | f.PRIORITY, 5, b"\x00\x00\x00\x05\x10\x83")):
        conn, transport, _ = _connection()
        conn.data_received(frame)
        assert transport.closed and _goaway(transport.frames()) == f.PROTOCOL_ERROR


# -- in-process on real sockets: an H2Server with the echo app ---------------------------------




async def _echo(port: int, reader_writer: tuple | None = None) -> bytes:
    """One request on a new (or given) connection; the echoed body."""
    reader, writer = reader_writer or await asyncio.open_connection("127.0.0.1", port)
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", "/x"), (":authority", "a")])
    writer.write(f.PREFACE + f.settings({}) + f.frame(f.HEADERS, f.END_HEADERS, 1, block)
                 + f.frame(f.DATA, f.END_STREAM, 1, b"hello"))
    data = b""
    while True:
        head = await reader.readexactly(9)
        payload = await reader.readexactly(int.from_bytes(head[:3], "big"))
        if head[3] == f.DATA:
            data += payload
        if head[3] == f.HEADERS and head[4] & f.END_STREAM:
            writer.close()
            return data


def test_at_the_connection_cap_idle_connections_make_room() -> None:
    async def run() -> None:
        server = H2Server(Echo(), H2Config(max_connections=4))
        await server.start()
        try:
            used = await asyncio.open_connection("127.0.0.1", server.port)
            await _echo(server.port, used)  # used once, then idle
            idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
            for _ in range(5):  # new clients are served at once, every time
                assert await asyncio.wait_for(_echo(server.port), 5) == b"hello"
            assert server.evicted > 0 and len(server.connections) <= 4
            # never-used connections went first: the one that served a request is still open
            assert [c.last_id for c in server.connections if c.last_id] == [1]
            for reader, writer in idle:
                writer.close()
        finally:
            await server.stop(grace=0)

    asyncio.run(run())


# -- a real server: answers held by a zero window time out and give their budget back ---------

def test_zero_window_clients_cannot_hold_the_budget(start_server: Any, digits_base: Any) -> None:
    """Two clients announce a zero receive window: their answers wait, holding their requests'
    budget charge, and a third client is refused RESOURCE_EXHAUSTED. After the send timeout
    (here --http_body_timeout_seconds=2) both streams are reset CANCEL and the third is served.

    The budget: a waiting answer holds its request's body (~3.3 KB); while a request is decoded it
    also holds its decoded tensor (3,136 B, #21's charge), so the second holder needs ~9.7 KB and
    a third request ~13.1 KB: 11,000 lets two in and refuses the third."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from support.models import MODEL_NAME
    from support.tinymodels import digits_batch

    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                          "--max_inflight_bytes=11000", "--http_body_timeout_seconds=2")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.inputs["Conv1_input"].CopyFrom(tf.make_tensor_proto(np.asarray(digits_batch(1), np.float32)))
    body = request.SerializeToString()
    assert 3000 < len(body) < 3500
    holders = [RawH2(server.grpc_port, window=0) for _ in range(2)]
    channel = grpc.insecure_channel(server.grpc_target)
    try:
        for client in holders:
            client.headers(1, "/tensorflow.serving.PredictionService/Predict")
            client.message(1, body)
            while (got := client.read_frame()) is not None and not (got[0] == f.HEADERS and got[2] == 1):
                pass  # until the answer's HEADERS: its DATA now waits on the zero window
            assert got is not None
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for client in holders:
            assert client.answer(1).reset == f.CANCEL  # the send timeout's reset
        reply = stub.Predict(request, timeout=10)
        assert list(reply.outputs) and reply.model_spec.name == MODEL_NAME
    finally:
        channel.close()
        for client in holders:
            client.close()


def test_data_past_a_stream_receive_window_is_a_flow_control_error() -> None:
    conn, transport, _ = _connection(initial_window=16384)
    _open(conn, 1, hpack.Encoder())
    conn.data_received(f.frame(f.DATA, 0, 1, b"x" * 8000))  # under half the window: no update yet
    assert not transport.closed
    conn.data_received(f.frame(f.DATA, 0, 1, b"x" * 9000))  # 17,000 > 16,384 granted
    assert transport.closed and _goaway(transport.frames()) == f.FLOW_CONTROL_ERROR


def test_closed_connections_leave_no_trace_in_the_eviction_pools() -> None:
    conn, _, server = _connection()
    encoder = hpack.Encoder()
    assert conn in server.unused
    _open(conn, 1, encoder)
    assert conn not in server.unused and conn not in server.idle  # busy
    conn.data_received(f.rst_stream(1, f.CANCEL))
    assert list(server.idle) == [conn]  # idle again
    _open(conn, 3, encoder)
    conn.connection_lost(None)  # gone with a stream open
    assert not server.unused and not server.idle and not server.connections
