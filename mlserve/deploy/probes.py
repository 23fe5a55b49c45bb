"""Probes for the tensorflow/serving image: ready means the model reports AVAILABLE.

Why an exec probe (docs/deploy.md, "Probes", has the sources):
- `GET /v1/models/<m>` answers 200 whenever the model is known to the server, whatever its state
  (START, LOADING, AVAILABLE, UNLOADING, END): an httpGet probe only checks the status code, so
  it would call a pod ready whose only version is still loading or already unloaded.
- TF Serving's gRPC health service (`--enable_grpc_healthcheck_service`, off by default) is set to
  SERVING as soon as the port opens, not per model: a gRPC probe is no better than a TCP one.
- The image is ubuntu:22.04 plus `ca-certificates` and the server: no curl, no wget, but bash and
  grep. So the probe asks over bash's /dev/tcp and greps the body for `"state": "AVAILABLE"`.

The ports only open once ServerCore has loaded the initial models, so startup and liveness are
TCP checks: a slow load is given `STARTUP_BUDGET_S` before liveness starts counting.
"""
from __future__ import annotations

import shlex
from typing import Any

AVAILABLE_PATTERN = '"state" *: *"AVAILABLE"'  # in the body's model_version_status
STARTUP_PERIOD_S = 5
STARTUP_BUDGET_S = 600  # a big model may take minutes to load before the ports open


def readiness_command(model_name: str, port: int) -> list[str]:
    """The exec probe: exit 0 only when some version of the model reports AVAILABLE."""
    request = f"GET /v1/models/{model_name} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n"
    script = (f"exec 3<>/dev/tcp/127.0.0.1/{int(port)}"
              f" && printf {shlex.quote(request)} >&3"
              f" && grep -Eq {shlex.quote(AVAILABLE_PATTERN)} <&3")
    return ["/bin/bash", "-c", script]


def probes(model_name: str, rest_port: int) -> dict[str, Any]:
    """startupProbe, readinessProbe and livenessProbe for the serving container."""
    return {
        "startupProbe": {"tcpSocket": {"port": rest_port}, "periodSeconds": STARTUP_PERIOD_S,
                         "failureThreshold": STARTUP_BUDGET_S // STARTUP_PERIOD_S},
        "readinessProbe": {"exec": {"command": readiness_command(model_name, rest_port)},
                           "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2},
        "livenessProbe": {"tcpSocket": {"port": rest_port}, "periodSeconds": 10,
                          "timeoutSeconds": 3, "failureThreshold": 3},
    }
