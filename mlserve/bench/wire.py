"""HTTP/1.1 framing for the REST load and the canned server: just enough to move bytes fast.

The load generator sends one prebuilt request over and over on keep-alive connections and reads
each answer by its Content-Length (or chunks) without parsing the JSON; the canned server frames
requests the same way. The JSON error text comes from the REST client (`error_message`), so a
failed request reads the same in `mlserve bench` as in `mlserve predict`.
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from mlserve.errors import UsageError


def http_address(url: str) -> tuple[str, int, str, str]:
    """(host, port, base path, Host header) of a plain http:// URL."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise UsageError("bench drives plain http:// REST servers", hint="use --grpc, or an http:// URL")
    return parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/"), parts.netloc


def post_request(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One complete `POST <url><path>` request, as bytes: a JSON body, or (with `headers`, the v2
    binary extension's) an octet stream."""
    return post_head(url, path, len(body), headers) + body


def post_head(url: str, path: str, length: int, headers: dict[str, str] | None = None) -> bytes:
    """The head of `post_request`, for a body of `length` bytes sent after it."""
    _, _, base, netloc = http_address(url)
    kind = "application/octet-stream" if headers else "application/json"
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST {base}{path} HTTP/1.1\r\nHost: {netloc}\r\n"
            f"Content-Type: {kind}\r\n{extra}Content-Length: {length}\r\n\r\n")
    return head.encode("latin-1")


def response(status: str, body: bytes) -> bytes:
    """One complete HTTP/1.1 response with a JSON body, as bytes."""
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def content_length(head: bytes) -> int:
    """The Content-Length of a message head (0 when absent)."""
    lower = head.lower()
    at = lower.find(b"\ncontent-length:")  # a header of its own, not the end of another's name
    if at < 0:
        return 0
    at += 1
    end = lower.find(b"\r\n", at)
    return int(lower[at + 15:end if end >= 0 else None])


def split_requests(buffer: bytes, bodies: list[bytes] | None = None) -> tuple[int, bytes]:
    """How many complete requests `buffer` holds, and what is left after them (each complete
    request's body appended to `bodies` when given)."""
    count = 0
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return count, buffer
        length = content_length(buffer[:end + 2])
        if len(buffer) < end + 4 + length:
            return count, buffer
        if bodies is not None:
            bodies.append(buffer[end + 4:end + 4 + length])
        buffer = buffer[end + 4 + length:]
        count += 1


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: status, body, whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep = b"connection: close" not in lower and not head.startswith(b"HTTP/1.0")
    if b"content-length:" in lower:
        body = await reader.readexactly(content_length(head))
    elif b"transfer-encoding: chunked" in lower:
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body, keep = await reader.read(), False
    return status, body, keep
