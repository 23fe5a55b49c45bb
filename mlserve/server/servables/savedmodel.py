"""One loaded model version: its signatures, input checks, and the calls TF Serving's APIs make.

A `Servable` wraps a SavedModel loaded with `tf.saved_model.load`. Signature facts (keys, graph
tensor names, dtypes, shapes, method names) come from the SignatureDefs in `saved_model.pb`, the
same ones TF Serving reports in its metadata; requests run the signature's concrete function
directly (never Keras `predict`). Inputs are checked as TF Serving checks them (names, dtypes),
never against the signature's shapes: a shape the signature does not declare first passes
TensorFlow's shape inference (`shapes.ShapeChecker`), since some kernels (oneDNN Conv2D) abort the
whole process on a wrong rank instead of raising, and then runs on the graph.

Requests call each signature through `flatcall.flat_caller` when it verified a faster
entry into TensorFlow (see there), else through the public call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mlserve.server.servables import classify as classify_mod
from mlserve.server.servables import tensors
from mlserve.server.errors import ServingError, StatusCode
from mlserve.server.servables.flatcall import FlatCaller, flat_caller
from mlserve.server.servables.shapes import ShapeChecker
from mlserve.server.servables.signature import (CLASSIFY_METHOD, DEFAULT_SIGNATURE, PREDICT_METHOD,
                                               REGRESS_METHOD, SignatureInfo, TensorSpec, read_meta_graph,
                                               tensor_spec, tf_type_name)


WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warm-up records


def _check_input_count(sent: set[str], wanted: set[str]) -> None:
    """TF Serving's `VerifyRequestInputsSize` (predict_util.cc)."""
    if len(sent) != len(wanted):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.")


def _missing_input(spec: TensorSpec, sent: Mapping[str, Any], defaults: Mapping[str, Any]) -> ServingError:
    """TensorFlow's `saved_model::GetInputValues` (cc/saved_model/util.cc) for a signature input
    the request lacks and no default stands in for: it lists the request's names."""
    return ServingError(
        "INVALID_ARGUMENT",
        f"Signature input alias: {spec.key}(feed name: {spec.name}) not found in request and no default "
        f"value provided. Inputs expected to be in the request {{{','.join(sorted(sent))}}}, or default "
        f"input alias set: {','.join(sorted(defaults))}")


def _tf_error(e: Exception) -> ServingError:
    code = getattr(e, "error_code", 2)
    name = StatusCode.name_of(code)
    return ServingError(name, getattr(e, "message", None) or str(e))



class Servable:
    """A loaded SavedModel version. `run` is synchronous and safe to call from many threads."""

    # --enable_signature_method_name_check: process-wide, as TF Serving's feature flag is.
    method_name_check = False

    def __init__(self, name: str, version: int, path: Path, meta_graph: Any, loaded: Any) -> None:
        self.name = name
        self.version = version
        self.path = path
        self._meta_graph = meta_graph
        self._loaded = loaded
        self._functions: dict[str, Any] = dict(loaded.signatures)
        self.signatures: dict[str, SignatureInfo] = {}
        for key, sd in meta_graph.signature_def.items():
            if key not in self._functions:
                continue  # e.g. __saved_model_init_op: metadata only, not callable
            self.signatures[key] = SignatureInfo(
                name=key, method_name=sd.method_name,
                inputs={k: tensor_spec(k, v) for k, v in sd.inputs.items()},
                outputs={k: tensor_spec(k, v) for k, v in sd.outputs.items()})
        self._flat: dict[str, FlatCaller | None] = {
            key: flat_caller(self._functions[key], sig) for key, sig in self.signatures.items()}
        self._any_shape: dict[str, tuple[ShapeChecker, FlatCaller | None]] = {}

    @classmethod
    def load(cls, name: str, version: int, path: str | Path, *, tags: Sequence[str] = ("serve",)) -> "Servable":
        """Load `path` (one version folder). Raises whatever reading or loading raises."""
        import tensorflow as tf

        p = Path(path)
        meta_graph = read_meta_graph(p, tags)
        loaded = tf.saved_model.load(str(p), tags=list(tags))
        return cls(name, version, p, meta_graph, loaded)

    def __repr__(self) -> str:
        return f"<Servable {self.name} version {self.version} at {self.path}>"

    # -- signatures ---------------------------------------------------------------------------

    def signature(self, name: str | None, api: str = "predict") -> SignatureInfo:
        """The signature `name` ("" or None: serving_default); TF Serving's error when missing."""
        key = name or DEFAULT_SIGNATURE
        sig = self.signatures.get(key)
        if sig is None:
            if api == "predict":
                raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')
            raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {key}")
        if self.method_name_check:
            self._check_method_name(sig, api)
        return sig

    @staticmethod
    def _check_method_name(sig: SignatureInfo, api: str) -> None:
        """predict_util.cc `VerifySignature` under --enable_signature_method_name_check."""
        if api == "predict" and sig.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError("INTERNAL", "Expected prediction signature method_name to be one of {"
                               f"{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {sig.method_name}")

    def signature_def_map(self) -> Any:
        """A `SignatureDefMap` proto of every signature (what GetModelMetadata returns)."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        out = get_model_metadata_pb2.SignatureDefMap()
        for key, sd in self._meta_graph.signature_def.items():
            out.signature_def[key].CopyFrom(sd)
        return out

    # -- predict ------------------------------------------------------------------------------

    def inputs_from_protos(self, sig: SignatureInfo, protos: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """A Predict request's TensorProtos as arrays, in TF Serving's order (`PreProcessPrediction`):
        the count against the signature first (`VerifyRequestInputsSize`), then each signature
        input, decoded only once its name is found (`saved_model::GetInputValues`), so a request
        whose names do not fit costs nothing to decode."""
        _check_input_count(set(protos), set(sig.inputs))
        defaults = self._meta_graph.signature_def[sig.name].defaults
        out: dict[str, np.ndarray] = {}
        for key, spec in sorted(sig.inputs.items()):
            proto = protos.get(key)
            if proto is None:
                if key not in defaults:
                    raise _missing_input(spec, protos, defaults)
                proto = defaults[key]
            out[key] = tensors.to_ndarray(proto, key)
        used = [k for k in protos if k in sig.inputs]
        if len(used) != len(protos):  # a default stood in for a name the request spelt otherwise
            raise ServingError("INVALID_ARGUMENT", "Inputs contains invalid name. Used request inputs: "
                               f"{','.join(sorted(used))}, request input: {','.join(sorted(protos))}")
        return out

    def validate(self, sig: SignatureInfo, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
        """Check input names and dtypes against `sig` as TF Serving does; shapes are TensorFlow's."""
        if inputs.keys() != sig.inputs.keys():
            _check_input_count(set(inputs), set(sig.inputs))
            key = sorted(set(sig.inputs) - set(inputs))[0]
            raise _missing_input(sig.inputs[key], inputs, {})
        out: dict[str, np.ndarray] = {}
        for key, spec in sig.inputs.items():
            arr = np.asarray(inputs[key])
            if arr.dtype != spec.dtype and not (spec.dtype.kind == "O" and arr.dtype.kind in "OSU"):
                # A tensor is fed as it came (TF Serving never casts); the call frame refuses it.
                i = sorted(sig.inputs).index(key)
                raise ServingError("INVALID_ARGUMENT",
                                   f"Expects arg[{i}] to be {tf_type_name(spec.dtype)} but "
                                   f"{tf_type_name(arr.dtype)} is provided")
            out[key] = arr
        return out

    @staticmethod
    def shapes_match(sig: SignatureInfo, inputs: dict[str, np.ndarray]) -> bool:
        """Whether every input has a shape the signature declares (the fast path's inputs)."""
        for key, spec in sig.inputs.items():
            if spec.shape is None:
                continue
            arr = inputs[key]
            if arr.ndim != len(spec.shape) or not all(
                    want is None or want == got for want, got in zip(spec.shape, arr.shape)):
                return False
        return True

    def _run_any_shape(self, sig: SignatureInfo, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `sig` on shapes it does not declare, once TensorFlow's shape inference accepts them."""
        entry = self._any_shape.get(sig.name)
        if entry is None:
            fn = self._functions[sig.name]
            try:
                caller: FlatCaller | None = self._flat.get(sig.name) or FlatCaller(fn, sig)
            except Exception:  # noqa: BLE001 - no flat entry: ConcreteFunction._call_flat below
                caller = None
            entry = self._any_shape[sig.name] = (ShapeChecker(fn, sorted(sig.inputs)), caller)
        checker, caller = entry
        checker.check(tuple(tuple(inputs[k].shape) for k in sorted(sig.inputs)))
        if caller is not None:
            return caller(inputs)
        import tensorflow as tf

        fn = self._functions[sig.name]
        flat = [tf.constant(inputs[k], dtype=sig.inputs[k].dtype_enum) for k in sorted(sig.inputs)]
        # The public call (and _call_flat) refuse shapes the function was not traced with.
        result = fn._inference_function.call_preflattened(flat + list(fn.captured_inputs))  # noqa: SLF001
        if not isinstance(result, dict):
            result = {next(iter(sig.outputs)): result}
        return {k: v.numpy() for k, v in result.items()}

    @staticmethod
    def check_output_filter(sig: SignatureInfo, output_filter: Sequence[str] | None) -> None:
        seen: set[str] = set()
        for alias in output_filter or ():
            if alias not in sig.outputs:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"output tensor alias not found in signature: {alias} Outputs expected to be "
                    f"in the set {{{','.join(sorted(sig.outputs))}}}.")
            if alias in seen:
                raise ServingError("INVALID_ARGUMENT", f"duplicate output tensor alias: {alias}")
            seen.add(alias)

    def run(self, signature_name: str | None, inputs: dict[str, Any],
            output_filter: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Validate `inputs`, run the signature, return its outputs (only `output_filter` if given)."""
        sig = self.signature(signature_name)
        self.check_output_filter(sig, output_filter)
        checked = self.validate(sig, inputs)
        flat = self._flat.get(sig.name)
        try:
            if not self.shapes_match(sig, checked):
                outputs = self._run_any_shape(sig, checked)
                return {k: outputs[k] for k in output_filter} if output_filter else outputs
            if flat is not None:
                outputs = flat(checked)
                return {k: outputs[k] for k in output_filter} if output_filter else outputs
            result = self._functions[sig.name](**checked)
        except ServingError:
            raise
        except Exception as e:  # TF raises OpError subclasses carrying a gRPC code
            raise _tf_error(e) from e
        if not isinstance(result, dict):
            result = {next(iter(sig.outputs)): result}
        keys = output_filter or list(result)
        return {k: result[k].numpy() for k in keys}

    def predict(self, request: Any, *, tensor_content: bool = False) -> Any:
        """Answer a `PredictRequest` proto with a `PredictResponse` proto (warm-up replays these;
        the gRPC front-end goes through the data plane, which may batch)."""
        sig = self.signature(request.model_spec.signature_name)
        inputs = {k: tensors.to_ndarray(v, k) for k, v in request.inputs.items()}
        outputs = self.run(sig.name, inputs, list(request.output_filter) or None)
        return self.predict_response(sig.name, outputs, tensor_content=tensor_content)

    def predict_response(self, signature_name: str, outputs: dict[str, np.ndarray], *,
                         tensor_content: bool = False) -> Any:
        """A `PredictResponse` proto holding `outputs` of this version's `signature_name`."""
        from tensorflow_serving.apis import predict_pb2

        resp = predict_pb2.PredictResponse()
        self.fill_spec(resp.model_spec, signature_name)
        for key, value in outputs.items():
            tensors.to_proto(value, as_content=tensor_content, out=resp.outputs[key])
        return resp

    def fill_spec(self, spec: Any, signature_name: str) -> None:
        spec.name = self.name
        spec.version.value = self.version
        spec.signature_name = signature_name

    # -- classify / regress / multi-inference (tf.Example input: see classify.py) --------------

    def signature_def(self, name: str) -> Any:
        """The SignatureDef proto of signature `name`."""
        return self._meta_graph.signature_def[name]

    def classify(self, request: Any) -> Any:
        """Answer a `ClassificationRequest` (signature with input "inputs", outputs classes/scores)."""
        return classify_mod.classify(self, request)

    def regress(self, request: Any) -> Any:
        """Answer a `RegressionRequest` (signature with input "inputs", output "outputs")."""
        return classify_mod.regress(self, request)

    def multi_inference(self, request: Any) -> Any:
        """Answer a `MultiInferenceRequest`: several classify/regress signatures on one input."""
        return classify_mod.multi_inference(self, request)

    # -- warm-up ------------------------------------------------------------------------------

    def warmup(self, iterations: int = 1) -> int:
        """Replay `assets.extra/tf_serving_warmup_requests` (PredictionLog TFRecords); returns count."""
        path = self.path / WARMUP_FILE
        if not path.is_file():
            return 0
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        for i, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            if i >= MAX_WARMUP_RECORDS:
                break
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            kind = entry.WhichOneof("log_type")
            for _ in range(max(iterations, 1)):
                if kind == "predict_log":
                    self.predict(entry.predict_log.request)
                elif kind == "classify_log":
                    self.classify(entry.classify_log.request)
                elif kind == "regress_log":
                    self.regress(entry.regress_log.request)
                elif kind == "multi_inference_log":
                    self.multi_inference(entry.multi_inference_log.request)
                else:
                    raise ValueError(f"Unsupported log_type for warmup: {kind}")
            count += 1
        return count
