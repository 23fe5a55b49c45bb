"""gRPC over HTTP/2 (the gRPC spec's PROTOCOL-HTTP2.md): length-prefixed messages, compression,
`grpc-timeout`, and the header and trailer blocks of answers. No transport, no methods."""
from __future__ import annotations

import zlib

from mlserve.server.errors import ServingError, StatusCode
from mlserve.server.transport.http2.frames import encode_headers

ACCEPT_ENCODING = b"identity,deflate,gzip"
_BASE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
RESPONSE_HEADERS = encode_headers([*_BASE, (b"grpc-accept-encoding", ACCEPT_ENCODING)])
OK_TRAILERS = encode_headers([(b"grpc-status", b"0")])
_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3, ord("u"): 1e-6, ord("n"): 1e-9}
_PLAIN = frozenset(range(0x20, 0x7F)) - {ord("%")}


def parse_timeout(value: bytes | None) -> float | None:
    """`grpc-timeout` (1-8 digits and a unit H M S m u n) in seconds; None when absent or malformed."""
    if not value or len(value) > 9 or value[-1] not in _UNITS or not value[:-1].isdigit():
        return None
    return int(value[:-1]) * _UNITS[value[-1]]


def percent_encode(message: str) -> bytes:
    """`grpc-message`: UTF-8, every byte outside printable ASCII (and '%') as %XX."""
    return b"".join(bytes((b,)) if b in _PLAIN else b"%%%02X" % b for b in message.encode("utf-8"))


def trailers_only(code: str, message: str) -> bytes:
    """A Trailers-Only answer: one header block with the status (an error, or a call that ends
    with nothing to send)."""
    return encode_headers([*_BASE, (b"grpc-status", str(StatusCode.number(code)).encode()),
                           (b"grpc-message", percent_encode(message[:4096]))])


def trailers(code: str, message: str) -> bytes:
    """Trailers after messages were sent."""
    if code == "OK":
        return OK_TRAILERS
    return encode_headers([(b"grpc-status", str(StatusCode.number(code)).encode()),
                           (b"grpc-message", percent_encode(message[:4096]))])


def pack(payload: bytes) -> bytes:
    """One uncompressed length-prefixed message."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def unpack(body: bytes | bytearray, encoding: bytes | None, max_bytes: int) -> bytes:
    """The one message of a unary request's body, decompressed; ServingError when it is not
    exactly one message, is compressed in a way we do not read, or decompresses past `max_bytes`."""
    if len(body) < 5:
        raise ServingError("INTERNAL" if body else "UNIMPLEMENTED",
                           "Incomplete message" if body else "Missing request message")
    compressed, length = body[0], int.from_bytes(body[1:5], "big")
    if length != len(body) - 5:
        raise ServingError("INTERNAL", "Expected exactly one request message")
    payload = bytes(body[5:])
    if not compressed:
        return payload
    name = (encoding or b"identity").lower()
    if name == b"gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif name == b"deflate":
        inflater = zlib.decompressobj()
    else:
        raise ServingError("UNIMPLEMENTED", f"Compression algorithm '{name.decode('latin-1')}' not supported")
    try:
        data = inflater.decompress(payload, max_bytes + 1)
    except zlib.error as e:
        raise ServingError("INTERNAL", f"Failed to decompress the request message: {e}") from None
    if len(data) > max_bytes:
        raise ServingError("RESOURCE_EXHAUSTED", f"Received message larger than max (more than {max_bytes} bytes)")
    return data
