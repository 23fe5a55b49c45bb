"""The HTTP/2 transport's settings: every limit named, typed and in one place (as `http/config.py`
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
