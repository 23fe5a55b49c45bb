"""The one data-plane API every protocol front-end calls; it knows no wire protocol.

Front-ends (`frontends/rest/` for TF Serving's REST API, `frontends/grpc/` for its gRPC API, later
one for the Open Inference Protocol) decode a request into the arguments below, call one
method, and encode what it returns or the `ServingError` it raises:

    servable(ref) -> Servable                         which loaded version a request names
    status(ref) -> list[VersionStatus]                model (version) states
    metadata(ref) -> ModelMetadata                    name, version, SignatureDefMap
    predict(servable, signature, inputs, ...) -> dict[str, np.ndarray]     blocking
    predict_then(servable, signature, inputs, done)   answers through `done(outputs, error)`
    classify / regress / multi_inference(servable, request proto) -> response proto
    reload(config)                                    HandleReloadConfigRequest
    models() / ready() / on_change(listener)          listing, readiness, state changes

Tensors are numpy arrays keyed by the signature's input and output aliases. Classify, regress
and multi-inference take TF Serving's request protos: tf.Example input has no other form.
The batcher, when batching is on, sits behind `predict` and `predict_then`: front-ends never see it.
Before it come the feature lookup (`features/`, --feature_lookup) and the prediction cache
(`cache/`, --prediction_cache_bytes / --prediction_cache), in `_before`; a front-end passes a
`notes` dict to get what they did (lookup_ms, cache, batch...) for its request log line.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mlserve.server.cache import PredictionCache
from mlserve.server.observability import metrics
from mlserve.server.servables.batching import Batcher, Done, Prepare
from mlserve.server.servables.batchingparams import BatchingOptions
from mlserve.server.transport.budget import InflightBudget
from mlserve.server.errors import ServingError
from mlserve.server.models.manager import ModelManager, VersionStatus
from mlserve.server.models.reloadpolicy import ReloadPolicy
from mlserve.server.servables.savedmodel import Servable
from mlserve.server.servables.tensors import MAX_DECODED_REQUEST_BYTES


PER_MODEL_BATCHING_FILE = "batching_params.pbtxt"  # TF Serving's kBatchingParamsFilename


@dataclass(frozen=True)
class ModelRef:
    """What a request names: a model, and optionally one version or one version label."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True)
class ModelMetadata:
    """A version's metadata: TF Serving's `SignatureDefMap` proto for it."""

    name: str
    version: int
    signature_def_map: Any


class DataPlane:
    """Models, batching and metrics of model calls behind one API (see the module docstring)."""

    def __init__(self, manager: ModelManager, batcher: Batcher | None = None, *,
                 per_model_batching: bool = False, budget: InflightBudget | None = None) -> None:
        self.manager = manager
        self.batcher = batcher
        # --max_inflight_bytes, one count for every front-end's requests (each has its own otherwise)
        self.budget = budget
        # --max_decoded_request_bytes: what one request's tensors may decode to (gRPC front-ends)
        self.max_decoded_bytes = MAX_DECODED_REQUEST_BYTES
        self._metadata: dict[int, tuple[Servable, ModelMetadata]] = {}
        # --enable_per_model_batching_params (bundle_factory_util.cc GetPerModelBatchingParams):
        # a version folder's batching_params.pbtxt batches that version; without one, no batching.
        self.per_model_batching = per_model_batching and batcher is not None
        self._model_batchers: dict[str, Batcher | None] = {}
        self._batchers_lock = threading.Lock()
        # --feature_lookup (mlserve extension, server/features/): fills inputs from a store
        self.features: Any = None
        # --prediction_cache_bytes / --prediction_cache (mlserve extension, server/cache/)
        self.cache: PredictionCache | None = None

    @property
    def remote_io(self) -> bool:
        """Whether a predict may wait on the network (a feature store, a shared cache): such a
        call must not run on an event loop."""
        return self.features is not None or (self.cache is not None and self.cache.remote)

    def _batcher_for(self, servable: Servable) -> Batcher | None:
        if not self.per_model_batching:
            return self.batcher
        key = str(servable.path)
        if key in self._model_batchers:
            return self._model_batchers[key]
        with self._batchers_lock:
            if key not in self._model_batchers:
                params = servable.path / PER_MODEL_BATCHING_FILE
                self._model_batchers[key] = (
                    Batcher(BatchingOptions.from_file(params)) if params.is_file() else None)
            return self._model_batchers[key]

    def close(self) -> None:
        """Stop the per-model batchers (the shared one belongs to whoever made it)."""
        with self._batchers_lock:
            batchers, self._model_batchers = list(self._model_batchers.values()), {}
        for batcher in batchers:
            if batcher is not None:
                batcher.close()

    # -- models ---------------------------------------------------------------------------

    def servable(self, ref: ModelRef) -> Servable:
        """The loaded version `ref` names (the latest when it names none); NOT_FOUND else."""
        if not ref.name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        return self.manager.get(ref.name, ref.version, ref.label)

    def status(self, ref: ModelRef) -> list[VersionStatus]:
        """Every known version's state, newest first, or the one version `ref` names. A label
        is ignored, as get_model_status_impl.cc reads only a ModelSpec's version."""
        return self.manager.status(ref.name, ref.version)

    def metadata(self, ref: ModelRef) -> ModelMetadata:
        """The signatures of the version `ref` names (built once per loaded version)."""
        servable = self.servable(ref)
        cached = self._metadata.get(id(servable))
        if cached is not None and cached[0] is servable:
            return cached[1]
        meta = ModelMetadata(servable.name, servable.version, servable.signature_def_map())
        if len(self._metadata) > 256:
            self._metadata.clear()
        self._metadata[id(servable)] = (servable, meta)
        return meta

    def models(self) -> list[tuple[str, list[VersionStatus]]]:
        """Every configured model with its versions' states (none yet: an empty list)."""
        listing = []
        for name in sorted(self.manager.model_names()):
            try:
                statuses = self.manager.status(name)
            except ServingError:
                statuses = []
            listing.append((name, statuses))
        return listing

    def ready(self) -> bool:
        """Every configured model has an AVAILABLE version."""
        return bool(self.manager.all_available())

    def on_change(self, listener: Callable[..., None]) -> None:
        """Call `listener(model, VersionStatus)` on every version state change."""
        self.manager.add_listener(listener)

    reload_policy = ReloadPolicy()  # main.py sets the one from the flags

    def reload(self, config: Any) -> None:
        """Serve exactly the models of `config` (a ModelServerConfig's model_config_list)."""
        if config.WhichOneof("config") != "model_config_list":
            raise ServingError("INVALID_ARGUMENT",
                               "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                               "Only ModelConfigList is currently supported")
        self.reload_policy.check(config, self.manager.available_names())  # reloadpolicy.py: safety
        try:
            self.manager.reload_config(config)
        except ServingError:
            raise
        except Exception as e:  # a UsageError from config validation
            raise ServingError("INVALID_ARGUMENT", getattr(e, "message", str(e))) from e

    # -- inference ------------------------------------------------------------------------

    def predict(self, servable: Servable, signature_name: str, inputs: dict[str, np.ndarray], *,
                output_filter: Sequence[str] | None = None, timeout: float | None = None,
                notes: dict | None = None) -> dict[str, np.ndarray]:
        """Run a signature and return its outputs (only `output_filter`'s when given); through
        the batcher when batching is on, waiting at most `timeout` seconds for it. `notes`, when
        given, gets what the request log tells of the call (lookup_ms, cache, batch...)."""
        batcher = self._batcher_for(servable)
        inputs, prepare, key, hit = self._before(servable, signature_name, inputs, batcher, output_filter,
                                                 timeout, notes)
        if hit is not None:
            return hit
        if batcher is None:
            outputs = self._run(servable, signature_name, inputs, output_filter)
        else:
            servable.check_output_filter(servable.signature(signature_name), output_filter)
            try:
                outputs = batcher.submit_future(servable, signature_name, inputs, notes, prepare).result(timeout)
            except concurrent.futures.TimeoutError:
                raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None
            if output_filter:
                outputs = {k: outputs[k] for k in output_filter}
        if key is not None:
            self.cache.put(key, outputs)
        return outputs

    def predict_then(self, servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
                     done: Done, *, batch: bool = True, timeout: float | None = None,
                     notes: dict | None = None) -> None:
        """Run a signature and call `done(outputs, None)` or `done(None, error)` once.

        With batching on (and `batch`), the call is queued and `done` runs on a batch thread;
        otherwise it runs here. Raises at once what the batcher refuses (a bad request, a full
        queue) and what the feature lookup answers (bounded by `timeout`, the request's time
        left). With batching on, a keyed request's lookup is done once per batch on the batch
        thread (and its answer not cached: the key is not the model's input). `notes` as for
        `predict`."""
        batcher = self._batcher_for(servable) if batch else None
        inputs, prepare, key, hit = self._before(servable, signature_name, inputs, batcher, None, timeout, notes)
        if hit is not None:
            done(hit, None)
            return
        if key is not None:
            done = _storing(self.cache, key, done)
        if batcher is not None:
            batcher.submit_callback(servable, signature_name, inputs, done, notes, prepare)
            return
        try:
            outputs = self._run(servable, signature_name, inputs, None)
        except Exception as e:  # noqa: BLE001 - handed to the caller
            done(None, e)
            return
        done(outputs, None)

    def _before(self, servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
                batcher: Batcher | None, output_filter: Sequence[str] | None, timeout: float | None,
                notes: dict | None) -> tuple[dict[str, np.ndarray], Prepare | None, bytes | None, dict | None]:
        """What comes before a model call: the feature lookup (here, or with batching a `prepare`
        for the batch thread), then the prediction cache. Returns (inputs, prepare, cache key,
        cached answer)."""
        prepare = None
        if self.features is not None:
            if batcher is not None and self.features.needs_lookup(servable, signature_name, inputs):
                prepare = self.features.complete_many  # one store read per batch, on the batch thread
            else:
                inputs = self.features.complete(servable, signature_name, inputs, timeout, notes)
        if self.cache is None or prepare is not None:
            return inputs, prepare, None, None
        key = self.cache.key(servable, signature_name, inputs, output_filter)
        hit = None
        if key is not None:
            hit = self.cache.get(key, servable.name)
            if notes is not None:
                notes["cache"] = "hit" if hit is not None else "miss"
        return inputs, prepare, key, hit

    def _run(self, servable: Servable, signature_name: str, inputs: dict[str, np.ndarray],
             output_filter: Sequence[str] | None) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = servable.run(signature_name, inputs, output_filter)
        metrics.observe_runtime(servable.name, "Predict", time.perf_counter() - start)
        return outputs

    def classify(self, servable: Servable, request: Any) -> Any:
        """Answer a ClassificationRequest proto with a ClassificationResponse."""
        start = time.perf_counter()
        response = servable.classify(request)
        metrics.observe_runtime(servable.name, "Classify", time.perf_counter() - start)
        return response

    def regress(self, servable: Servable, request: Any) -> Any:
        """Answer a RegressionRequest proto with a RegressionResponse."""
        start = time.perf_counter()
        response = servable.regress(request)
        metrics.observe_runtime(servable.name, "Regress", time.perf_counter() - start)
        return response

    def multi_inference(self, servable: Servable, request: Any) -> Any:
        """Answer a MultiInferenceRequest (its tasks name `servable`'s model) with a
        MultiInferenceResponse."""
        return servable.multi_inference(request)


def _storing(cache: PredictionCache, key: bytes, done: Done) -> Done:
    """`done`, after a computed answer is put in the cache."""
    def store_then_done(outputs: dict | None, error: BaseException | None) -> None:
        if error is None and outputs is not None:
            cache.put(key, outputs)
        done(outputs, error)
    return store_then_done
