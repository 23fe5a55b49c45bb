"""The HTTP/1.1 layer's settings: every limit named, typed and in one place (as uvicorn's
`config.py`). `HttpConfig` is built from the server's flags by the front-end that serves
(`rest.http_config`); docs/security.md says what each limit defends against."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, read back from the server's `.port`
    max_request_bytes: int = 64 * 1024 * 1024  # a larger body is answered 413 and the connection closed
    max_request_line_bytes: int = 16 * 1024  # a longer request line (URL) is answered 414 and closed
    max_header_bytes: int = 64 * 1024  # larger request headers are answered 431 and closed
    header_timeout: float = 10.0  # seconds a request's line and headers may take to arrive: else 408
    max_pipeline: int = 32  # requests queued on one connection before it stops reading
    max_unsent_bytes: int = 1024 * 1024  # answers not yet taken by the client before it stops reading
    idle_timeout: float = 60.0  # seconds a keep-alive connection may sit idle between requests
    stall_timeout: float = 60.0  # seconds a request's body may take to arrive completely (after its headers)
    max_inflight_bytes: int = 512 * 1024 * 1024  # requests' cost in flight, all connections: else 429
    body_cost_factor: int = 1  # a request's cost: this x its body bytes (the app's decode memory included)
    max_connections: int = 4096  # open connections; past it a new one is closed at accept
    backlog: int = 1024  # the listening socket's accept queue
    cors: bool = False  # add Access-Control-Allow-* to responses that ask for it
    # Host names (lowercase, no port; IPv6 in brackets) a request may name; None: any. A request
    # naming another is answered 421 and closed (DNS rebinding; `host_allowed`).
    allowed_hosts: frozenset[str] | None = None


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether binding `host` serves only this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(value: bytes) -> str:
    """A Host header's name without its port, lowercase ("[::1]:8501" -> "[::1]")."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[:end + 1] if end > 0 else text
    name, sep, port = text.rpartition(":")
    return name if sep and port.isdigit() else text
