"""Request targets as TF Serving reads them (`restpaths.py`): net_http's strict URI parse, the
Prometheus handler found by path alone, and the REST regexes matched on the path with its query."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Callable

import pytest

from support.servers import ServerProcess

NAME = "half_plus_two"
PROM = "/monitoring/prometheus/metrics"


@pytest.fixture
def server(start_server: Callable[..., ServerProcess], half_plus_two_base: Path, tmp_path: Path) -> ServerProcess:
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{PROM}" }}')
    return start_server(f"--model_name={NAME}", f"--model_base_path={half_plus_two_base}",
                        f"--monitoring_config_file={monitoring}", models=[NAME])


def _raw(server: ServerProcess, method: str, target: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request with the target sent exactly as given (HTTP clients would normalise it)."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += sock.recv(65536)
        return int(lines[0].split()[1]), headers, rest[:length]


def _error(server: ServerProcess, method: str, target: str, body: bytes = b"") -> tuple[int, str]:
    status, headers, data = _raw(server, method, target, body)
    assert headers["content-type"] == "application/json", (target, data)
    return status, json.loads(data)["error"]


PREDICT = b'{"instances": [1.0]}'


def test_query_strings_are_part_of_what_the_v1_regexes_match(server: ServerProcess) -> None:
    """http_server.cc matches `(?i)/v1/.*` and http_rest_api_util.cc's regexes on uri_path(),
    which net_http builds as path + "?" + query (evhttp_request.cc)."""
    for verb in ("predict", "classify", "regress"):
        target = f"/v1/models/{NAME}:{verb}?x=1"
        assert _error(server, "POST", target, PREDICT) == (400, f"Malformed request: POST {target}")
    target = f"/v1/models/{NAME}/versions/123:predict?"
    assert _error(server, "POST", target, PREDICT) == (400, f"Malformed request: POST {target}")
    for target in (f"/v1/models/{NAME}/metadata?x=1", f"/v1/models/{NAME}/versions/123?x=1", "/v1/foo?x=1"):
        assert _error(server, "GET", target) == (400, f"Malformed request: GET {target}")
    # `[^/:]+` takes the query into the model name: a status request for model "half_plus_two?x=1"
    assert _error(server, "GET", f"/v1/models/{NAME}?x=1") == (
        404, f"Could not find any versions of model {NAME}?x=1")
    # ... or into a label, which a status request does not read (get_model_status_impl.cc)
    status, _, body = _raw(server, "GET", f"/v1/models/{NAME}/labels/stable?x=1")
    assert status == 200 and b'"AVAILABLE"' in body
    # without a query, all is served
    status, _, body = _raw(server, "POST", f"/v1/models/{NAME}:predict", PREDICT)
    assert (status, json.loads(body)) == (200, {"predictions": [2.5]})


def test_verb_and_subresource_are_compared_exactly(server: ServerProcess) -> None:
    """The regexes are `(?i)`; the handler then tests `method == "predict"` and
    `model_subresource == "metadata"` exactly (http_rest_api_handler.cc)."""
    target = f"/V1/MODELS/{NAME}:PREDICT"
    assert _error(server, "POST", target, PREDICT) == (400, f"Malformed request: POST {target}")
    status, _, body = _raw(server, "POST", f"/V1/Models/{NAME}:predict", PREDICT)
    assert (status, json.loads(body)) == (200, {"predictions": [2.5]})
    status, _, body = _raw(server, "GET", f"/v1/models/{NAME}/METADATA")  # a status request
    assert status == 200 and b"model_version_status" in body
    status, _, body = _raw(server, "GET", f"/v1/models/{NAME}/versions/00000000000000000000123")  # SimpleAtoi
    assert status == 200 and json.loads(body)["model_version_status"][0]["version"] == "123"
    big = "9" * 25
    assert _error(server, "GET", f"/v1/models/{NAME}/versions/{big}") == (
        400, f"Failed to convert version: {big} to numeric.")


def test_monitoring_path_is_found_by_path_and_refuses_a_query(server: ServerProcess) -> None:
    """net_http finds registered handlers by the path alone (evhttp_server.cc); the Prometheus
    handler compares uri_path() with its path (http_server.cc): 400 text/plain."""
    status, headers, body = _raw(server, "GET", PROM)
    assert status == 200 and headers["content-type"] == "text/plain"
    status, headers, body = _raw(server, "GET", PROM + "?name=x")
    assert (status, headers["content-type"]) == (400, "text/plain")
    assert body == f"Unexpected path: {PROM}?name=x. Should be {PROM}".encode()


@pytest.mark.parametrize("method,target,status,reason", [
    ("TRACE", f"/v1/models/{NAME}", 501, "Not Implemented"),  # evhttp_set_allowed_methods (evhttp_server.cc)
    ("PROPFIND", "/v1/models/x", 501, "Not Implemented"),
    ("GET", "/nothing/here?x=1", 404, "Not Found"),
    ("GET", "/v1/models/half%zz", 400, "Bad Request"),  # `%` must be followed by two hex digits
    ("GET", '/v1/models/{"a"}', 400, "Bad Request"),  # outside RFC 3986's characters
    ("POST", "/v1/models/x#a#b", 400, "Bad Request"),
])
def test_requests_net_http_refuses_get_libevents_page(server: ServerProcess, method: str, target: str,
                                                      status: int, reason: str) -> None:
    """A method not allowed: 501; evhttp_uri_parse (strict) fails: 400; no handler: 404; each
    libevent's evhttp_send_error page, text/html, connection closed."""
    got, headers, body = _raw(server, method, target)
    assert (got, headers["content-type"], headers.get("connection")) == (status, "text/html", "close")
    assert body == (f"<HTML><HEAD>\n<TITLE>{status} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n"
                    "</BODY></HTML>\n").encode()
