"""Request header fields as RFC 9113 §8.2-§8.3 allows them (the checks python-hyper `h2` makes on
what it receives): names lowercase and of legal characters, values without NUL/CR/LF or
surrounding whitespace, no connection-specific fields, `te` only "trailers", pseudo-headers
known, single, before the regular fields, the request's own present (and none in trailers), and
`:authority`/`host` present and agreeing. A violation is a connection error (PROTOCOL_ERROR), as
`h2` makes it, so that a malformed block never reaches the application."""
from __future__ import annotations

from mlserve.server.transport.http2 import frames as f

CONNECTION_SPECIFIC = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"))
REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
_BAD_NAME = bytes(range(0x21)) + bytes(range(0x41, 0x5B)) + bytes(range(0x7F, 0x100))


def _malformed(why: str) -> f.ConnectionError_:
    return f.ConnectionError_(f.PROTOCOL_ERROR, f"malformed header block: {why}")


def check_fields(pairs: list[tuple[bytes, bytes]], trailers: bool) -> dict[bytes, bytes]:
    """`pairs` (a decoded block) as a dict, or a ConnectionError_ naming the first violation."""
    pseudo: dict[bytes, bytes] = {}
    regular = False
    hosts = 0
    for name, value in pairs:
        if not name:
            raise _malformed("an empty field name")
        if name.translate(None, _BAD_NAME) != name or b":" in name[1:]:
            raise _malformed(f"field name {name[:64]!r}")
        if value and (b"\x00" in value or b"\r" in value or b"\n" in value
                      or value[:1] in (b" ", b"\t") or value[-1:] in (b" ", b"\t")):
            raise _malformed(f"the value of {name[:64]!r}")
        if name[:1] == b":":
            if regular:
                raise _malformed(f"{name!r} after a regular field")
            if name in pseudo:
                raise _malformed(f"{name!r} twice")
            if name not in REQUEST_PSEUDO:
                raise _malformed(f"pseudo-header {name[:64]!r}")
            pseudo[name] = value
            continue
        regular = True
        if name in CONNECTION_SPECIFIC:
            raise _malformed(f"connection-specific field {name!r}")
        if name == b"te" and value.lower() != b"trailers":
            raise _malformed("te other than trailers")
        if name == b"host":
            hosts += 1
    headers = dict(pairs)
    if trailers:
        if pseudo:
            raise _malformed("pseudo-header in trailers")
        return headers
    method = pseudo.get(b":method")
    if method is None:
        raise _malformed("no :method")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            raise _malformed("CONNECT with :scheme or :path")
    else:
        if b":scheme" not in pseudo or b":path" not in pseudo:
            raise _malformed("no :scheme or :path")
        if b":protocol" in pseudo and method != b"CONNECT":
            raise _malformed(":protocol without CONNECT")
    if b":path" in pseudo and not pseudo[b":path"]:
        raise _malformed("an empty :path")
    if hosts > 1:
        raise _malformed("several host fields")
    authority, host = pseudo.get(b":authority"), headers.get(b"host") if hosts else None
    if authority is None and host is None:
        raise _malformed("no :authority or host")
    if authority is not None and host is not None and authority != host:
        raise _malformed(":authority and host differ")
    return headers
