"""The HTTP/2 transport's settings: every limit named, typed and in one place (as `http1/config.py`
for HTTP/1.1). Built from the server's flags by the gRPC front-end (`grpc_frontend.h2_config`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class H2Config:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, read back from the server's `.port`
    max_concurrent_streams: int = 1000  # advertised; a stream past it is reset REFUSED_STREAM
    max_header_list_bytes: int = 64 * 1024  # a larger request header block: the connection is closed
    max_body_bytes: int = 64 * 1024 * 1024  # a stream's request body past it: the app's `refuse` answers
    max_inflight_bytes: int = 512 * 1024 * 1024  # request bytes held at once, all connections
    initial_window: int = 4 * 1024 * 1024  # the receive window each stream starts with
    connection_window: int = 1 << 30  # the connection's receive window
    max_frame_size: int = 16384  # the largest frame we accept (SETTINGS_MAX_FRAME_SIZE)
    preface_timeout: float = 10.0  # seconds the client preface may take to arrive
    idle_timeout: float = 60.0  # seconds a connection without open streams stays open (0: forever)
    stall_timeout: float = 60.0  # seconds a request body may take after its headers
    max_connections: int = 4096  # open connections; past it a new one is closed at accept
    max_unsent_bytes: int = 1024 * 1024  # answer bytes the client has not taken before we stop reading
    backlog: int = 1024
    # decoded header blocks kept per connection (blocks that left the HPACK table unchanged),
    # and the largest block kept: at most about 2 x 32 x 512 bytes a connection, outside the budget
    hpack_cache_blocks: int = 32
    hpack_cache_block_bytes: int = 512
    # Flood limits (CVE-2023-44487 "Rapid Reset" and the 2019 floods, as nginx, Go and h2o bound
    # them): what one connection may send per `flood_window` seconds; past any of them the
    # connection gets GOAWAY ENHANCE_YOUR_CALM and is closed. 0 turns a limit off.
    flood_window: float = 10.0
    max_client_resets: int = 200  # RST_STREAM from the client (a stream opened, then cancelled)
    max_empty_data: int = 100  # DATA frames with no payload that do not end the stream
    max_pings: int = 100
    max_settings: int = 100
    max_priority: int = 1000  # PRIORITY frames
    max_unknown_frames: int = 100  # frames of types RFC 9113 does not define (otherwise ignored)
    max_closed_stream_frames: int = 1000  # WINDOW_UPDATE / RST_STREAM / DATA naming a closed stream
    # seconds an answer may wait on the client's flow-control window before its stream is reset
    # (and its budget charge released); 0: forever
    send_timeout: float = 30.0
