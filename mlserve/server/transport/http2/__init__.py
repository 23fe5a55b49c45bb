"""HTTP/2 (RFC 9113) server transport on an asyncio loop: frames, connections, limits.

It knows nothing of gRPC or TF Serving: an `H2App` gets each stream's request headers and
body and answers through the connection's `respond`/`send_*` methods (see `connection.py`).
"""
from mlserve.server.transport.http2.config import H2Config
from mlserve.server.transport.http2.connection import H2App, H2Connection, Stream
from mlserve.server.transport.http2.server import H2Server

__all__ = ["H2App", "H2Config", "H2Connection", "H2Server", "Stream"]
