"""The Starlette app of `mlserve ui`: the page, and the three calls it makes.

    GET  /                the page (static/index.html); /static/... its CSS and JavaScript
    GET  /api/info        the model, the server's address, the versions and labels to pick from
    POST /api/predict?pick=latest&pick=v2   body: a PNG/JPEG (the drawing or an upload, at most
                          `max_upload` bytes); answer: the framed 28×28 image and one answer per pick
    GET  /api/live        requests/s, p50/p99, errors (Prometheus page), versions, last label moves

Careful by default: the app talks only to the server it was started for (the page names versions,
never addresses); POSTs need the page's own header (another site's form cannot send one without
a CORS preflight, which is never granted); the Host header must be the loopback name the app is
bound to (no DNS rebinding); the page is served with a Content-Security-Policy that allows nothing
but this origin.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mlserve.errors import MlserveError
from mlserve.ui.backend import MAX_TARGETS, Backend, Choice, unreachable
from mlserve.ui.livemetrics import DEFAULT_PATH, LiveMetrics

STATIC = Path(__file__).with_name("static")
MAX_UPLOAD_BYTES = 4 << 20  # a phone photo of a digit fits; the drawing is ~10 KB
PAGE_HEADER = "x-mlserve-ui"  # set by the page's fetch(); a cross-site form cannot set it
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class UiConfig:
    backend: Backend
    metrics_path: str = DEFAULT_PATH
    max_upload: int = MAX_UPLOAD_BYTES
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]", "::1")


def _error(status: int, message: str, hint: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def create_app(config: UiConfig) -> Starlette:
    """The app for one model server (`config.backend`)."""
    backend = config.backend
    live = LiveMetrics(backend.model)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)

    def info(request: Request) -> JSONResponse:
        body: dict[str, object] = {
            "model": backend.model, "url": backend.url, "grpc_server": backend.grpc_server,
            "transport": backend.transport, "max_upload": config.max_upload,
            "max_picks": MAX_TARGETS, "metrics_path": config.metrics_path}
        try:
            body["versions"] = backend.versions()
        except MlserveError as e:
            body["versions"], body["server_error"] = [], unreachable(backend, e)
        return JSONResponse(body)

    async def predict(request: Request) -> JSONResponse:
        if request.headers.get(PAGE_HEADER) != "1":
            return _error(403, f"missing the {PAGE_HEADER} header", "send predictions from the page")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.max_upload:
            return _error(413, f"the image is {int(declared):,} bytes, more than {config.max_upload:,}",
                          "send a smaller image (a digit needs a few KB)")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > config.max_upload:
                return _error(413, f"the image is more than {config.max_upload:,} bytes",
                              "send a smaller image (a digit needs a few KB)")
        if not data:
            return _error(400, "no image in the request", "draw a digit or pick a PNG/JPEG file")
        try:
            picks = [Choice.parse(p) for p in request.query_params.getlist("pick")] or [Choice()]
        except MlserveError as e:
            return _error(400, e.message, e.hint or "")
        if len(picks) > MAX_TARGETS:
            return _error(400, f"{len(picks)} picks, at most {MAX_TARGETS}", "compare two versions at a time")
        return await run_in_threadpool(_predict, bytes(data), picks)

    def _predict(data: bytes, picks: list[Choice]) -> JSONResponse:
        from mlserve.model.inputs import load_image_bytes

        try:
            image, inverted = load_image_bytes(data, "the image")
        except MlserveError as e:
            return _error(400, e.message, e.hint or "")
        answers = [backend.predict(image, pick).as_dict() for pick in picks]
        return JSONResponse({"image": np.round(image, 4).tolist(), "inverted": inverted,
                             "answers": answers})

    def live_view(request: Request) -> JSONResponse:
        from mlserve.client import ModelTarget
        from mlserve.client.rest import RestClient

        body: dict[str, object] = {"history": backend.history()}
        try:
            body["versions"] = backend.versions()
            body["server"] = {"ok": True, "url": backend.url}
        except MlserveError as e:
            body["versions"] = []
            body["server"] = {"ok": False, **unreachable(backend, e)}
            body["metrics"] = {"available": False, "message": "no metrics: the server does not answer"}
            return JSONResponse(body)
        client = RestClient(backend.url, ModelTarget(backend.model), timeout=backend.timeout)
        try:
            status, page = client.request("GET", config.metrics_path)
        except MlserveError as e:
            status, page = 0, e.message.encode()
        finally:
            client.close()
        if status == 200:
            body["metrics"] = {"available": True, **live.add(page.decode("utf-8", "replace"), backend.own_errors[0])}
        else:
            body["metrics"] = {
                "available": False,
                "message": f"The server at {backend.url} has no metrics page at {config.metrics_path} "
                           f"(HTTP {status}). Start it with `mlserve serve --monitoring`, or give "
                           "tensorflow_model_server a --monitoring_config_file that enables Prometheus."}
        return JSONResponse(body)

    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/live", live_view),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts)),
                  Middleware(BaseHTTPMiddleware, dispatch=security_headers)]
    return Starlette(routes=routes, middleware=middleware)
