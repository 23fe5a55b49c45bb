"""What a rollout asks of the running server, over TF Serving's gRPC ModelService (official stubs).

`HandleReloadConfigRequest` applies a config (the same RPC on tensorflow_model_server and on the
embedded server), `GetModelStatus` says which versions are AVAILABLE, and predict by version
feeds the accuracy gate. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from mlserve.errors import ServerResponseError, ServerUnreachableError, WaitTimeoutError


class ReloadRefusedError(ServerResponseError):
    """The server refused (or failed) a HandleReloadConfigRequest."""


class VersionLoadError(ServerResponseError):
    """A version the rollout needs did not become AVAILABLE."""


class ServerLink:
    """One gRPC channel to a TF Serving-compatible server."""

    def __init__(self, address: str, *, timeout: float = 30.0, reload_timeout: float = 120.0,
                 base_path_for: Callable[[str, str], str] | None = None) -> None:
        import grpc

        from mlserve.client.grpc import load_protos

        self.address = address.removeprefix("grpc://")
        self.timeout = timeout
        self.reload_timeout = reload_timeout  # the embedded server loads new versions within the call
        # The server may see other paths than this machine (Docker mounts the base paths).
        self.base_path_for = base_path_for
        p = load_protos()
        from tensorflow_serving.apis import model_management_pb2  # loaded by the stubs above

        self._p, self._mm = p, model_management_pb2
        self._grpc = grpc
        self._channel = grpc.insecure_channel(self.address)
        self._models = p.model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ServerLink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def reload(self, config: Any) -> None:
        """Apply `config` (a ModelServerConfig proto); ReloadRefusedError when the server says no."""
        request = self._mm.ReloadConfigRequest()
        request.config.CopyFrom(config)
        if self.base_path_for is not None:
            for entry in request.config.model_config_list.config:
                entry.base_path = self.base_path_for(entry.name, entry.base_path)
        try:
            response = self._models.HandleReloadConfigRequest(request, timeout=self.reload_timeout)
        except self._grpc.RpcError as e:
            self._raise(e, "HandleReloadConfigRequest")
        if response.status.error_code != 0:
            raise ReloadRefusedError(f"{self.address} refused the new model config: "
                                     f"{response.status.error_message} (code {response.status.error_code})")

    def states(self, model: str) -> dict[int, tuple[str, str]]:
        """version -> (state, error message) for every version the server knows of `model`."""
        p = self._p
        request = p.get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        try:
            response = self._models.GetModelStatus(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            if e.code() == self._grpc.StatusCode.NOT_FOUND:
                return {}
            self._raise(e, "GetModelStatus")
        names = p.get_model_status_pb2.ModelVersionStatus.State
        return {int(v.version): (names.Name(v.state), v.status.error_message)
                for v in response.model_version_status}

    def available(self, model: str) -> set[int]:
        return {v for v, (state, _) in self.states(model).items() if state == "AVAILABLE"}

    def wait_available(self, model: str, version: int, timeout: float) -> None:
        """Until `version` is AVAILABLE; VersionLoadError as soon as its load has failed."""
        deadline = time.monotonic() + timeout
        while True:
            state, error = self.states(model).get(version, ("", ""))
            if state == "AVAILABLE":
                return
            if state == "END" and error:
                raise VersionLoadError(f"version {version} of model {model!r} failed to load: {error}",
                                       hint="fix or re-export that version, then retry")
            if time.monotonic() > deadline:
                raise WaitTimeoutError(
                    f"version {version} of model {model!r} was not AVAILABLE within {timeout:g}s"
                    + (f" (state {state})" if state else " (the server does not know it)"),
                    hint="raise --wait, or read the server's log: `mlserve logs`")
            time.sleep(0.1)

    def _raise(self, error: Any, method: str) -> None:
        code = error.code() if hasattr(error, "code") else None
        details = (error.details() if hasattr(error, "details") else "") or str(code)
        if code == self._grpc.StatusCode.UNAVAILABLE:
            raise ServerUnreachableError(f"no gRPC server answers at {self.address} ({details})",
                                         hint="start the server (`mlserve serve --detach`) or pass "
                                              "--grpc-server") from None
        if code == self._grpc.StatusCode.UNIMPLEMENTED:
            raise ReloadRefusedError(f"{self.address} does not implement {method}",
                                     hint="the server must be TF Serving (or mlserve's) with ModelService") from None
        name = code.name if code is not None else "UNKNOWN"
        raise ReloadRefusedError(f"{self.address} answered {method} with {name}: {details}") from None
