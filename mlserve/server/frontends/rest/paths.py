"""TF Serving's REST URLs: what its HTTP server (net_http over libevent) makes of a request
target, and how its handler's regular expressions read it. Facts from TF Serving's
`util/net_http/server/internal/evhttp_request.cc` and `evhttp_server.cc`,
`model_servers/http_server.cc`, `http_rest_api_util.cc`, and libevent 2.1.12's `evhttp_uri_parse`.

- libevent answers a method net_http does not allow (TRACE, CONNECT, any other) 501.
- net_http parses the target strictly (RFC 3986 characters only, `%` followed by two hex digits);
  a target it cannot parse is answered 400 with libevent's HTML page.
- Handlers registered for a path (the Prometheus page) are found by the path alone; the REST
  dispatcher and the handler's regexes see `uri_path()`: the path, then `?query` and `#fragment`
  when present. So a query string becomes part of what the regexes match.
- The regexes are case-insensitive, but the verb (`predict`, `classify`, `regress`) and the
  `metadata` subresource are then compared exactly.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from mlserve.server.errors import ServingError

V1_RE = re.compile(r"/v1/.*", re.I)  # kHTTPRestApiHandlerPathRegex, matched on uri_path
PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I | re.A)
STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I | re.A)
VERBS = ("classify", "regress", "predict")
# evhttp_server.cc's evhttp_set_allowed_methods; libevent answers any other method 501
LIBEVENT_METHODS = frozenset(("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"))

_PCHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2}"  # libevent end_of_path, strict
_TARGET_RE = re.compile(rf"((?:{_PCHAR})*)(?:\?((?:{_PCHAR}|\?)*))?(?:#((?:{_PCHAR}|\?)*))?")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:")


class Target(NamedTuple):
    path: str  # what net_http looks registered handlers up by
    uri_path: str  # what the REST dispatcher and its regexes see: path[?query][#fragment]


def parse_target(target: str) -> Target | None:
    """The request target as net_http reads it; None where libevent's strict URI parse fails
    (TF Serving answers 400 Bad Request before any handler)."""
    rest = target
    scheme = _SCHEME_RE.match(rest)
    if scheme:
        rest = rest[scheme.end():]
    authority = False
    if rest.startswith("//"):
        end = len(rest)
        for mark in "/?#":
            i = rest.find(mark, 2)
            if i >= 0:
                end = min(end, i)
        rest = rest[end:]
        authority = True
    m = _TARGET_RE.fullmatch(rest)
    if m is None:
        return None
    path, query, fragment = m.group(1), m.group(2), m.group(3)
    if authority and path and not path.startswith("/"):
        return None
    if not scheme and ":" in path.split("/", 1)[0]:
        return None  # a colon in the first segment would have been a scheme
    uri_path = path
    if query is not None:
        uri_path += "?" + query
    if fragment is not None:
        uri_path += "#" + fragment
    return Target(path, uri_path)


def version(text: str | None) -> int | None:
    """A version from the URL, as `absl::SimpleAtoi` reads it into an int64."""
    if not text:
        return None
    digits = text.lstrip("0") or "0"
    if len(digits) > 19 or int(digits) >= 2**63:  # the length test first: int() refuses 4,300+ digits
        raise ServingError("INVALID_ARGUMENT", f"Failed to convert version: {text} to numeric.")
    return int(digits)
