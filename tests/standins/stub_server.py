"""A tiny stand-in for a TF Serving process: answers GET /v1/models/<name> like TF Serving does.

Takes TF Serving flags (--port, --rest_api_port, --model_name, --model_config_file, --host).
Environment knobs for tests: MLSERVE_STANDIN_CRASH=1 (log an error and exit 1 at start),
MLSERVE_STANDIN_READY_DELAY=<s> (report LOADING until then), MLSERVE_STANDIN_IGNORE_TERM=1
(ignore SIGTERM, to exercise the SIGKILL path), MLSERVE_STANDIN_BIND_DELAY=<s> (wait before
binding the ports, as a real server loads TensorFlow first: opens the window in which a racing
start's readiness poll is answered by another server).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def flag(name: str, default: str = "") -> str:
    for arg in sys.argv[1:]:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def main() -> int:
    print(f"standin stub: argv {sys.argv[1:]}", flush=True)
    if os.environ.get("MLSERVE_STANDIN_CRASH") == "1":
        print("standin stub: E external/tf_serving: Failed to start server: "
              "Could not load model (stand-in crash)", file=sys.stderr, flush=True)
        return 1
    if os.environ.get("MLSERVE_STANDIN_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    host = flag("host", "127.0.0.1")
    models = [flag("model_name", "default")]
    if flag("model_config_file"):
        with open(flag("model_config_file")) as f:
            models = re.findall(r'name:\s*"([^"]+)"', f.read())
    ready_at = time.monotonic() + float(os.environ.get("MLSERVE_STANDIN_READY_DELAY", "0"))

    time.sleep(float(os.environ.get("MLSERVE_STANDIN_BIND_DELAY", "0")))
    grpc = socket.socket()
    grpc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    grpc.bind((host, int(flag("port", "8500"))))
    grpc.listen()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            name = self.path.rstrip("/").split("/")[-1]
            if not self.path.startswith("/v1/models/") or name not in models:
                self.send_response(404)
                body = {"error": f"Servable not found for request: Latest({name})"}
            else:
                state = "AVAILABLE" if time.monotonic() >= ready_at else "LOADING"
                self.send_response(200)
                body = {"model_version_status": [{"version": "1", "state": state,
                                                  "status": {"error_code": "OK", "error_message": ""}}]}
            data = json.dumps(body).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: object) -> None:
            print("standin stub: " + fmt % args, flush=True)

    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((host, int(flag("rest_api_port", "8501"))), Handler)

    def on_term(signum: int, frame: object) -> None:
        print("standin stub: SIGTERM, shutting down", flush=True)
        threading.Thread(target=server.shutdown, daemon=True).start()

    if os.environ.get("MLSERVE_STANDIN_IGNORE_TERM") != "1":
        signal.signal(signal.SIGTERM, on_term)
    print(f"standin stub: serving {models} REST {host}:{flag('rest_api_port')} "
          f"gRPC {host}:{flag('port')}", flush=True)
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    grpc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
