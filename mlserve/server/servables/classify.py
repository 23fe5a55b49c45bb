"""Classify, Regress and MultiInference on a `Servable`: tf.Example input, TF Serving's checks.

The checks and their words follow TF Serving: `classifier.cc` / `regressor.cc`
(`PreProcessClassification`, `PreProcessRegression`, `PostProcess*Result`), `util.cc` (the
input), and `multi_inference.cc` for the order of MultiInference's per-task checks.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mlserve.server.errors import ServingError
from mlserve.server.observability import metrics

from mlserve.server.servables.signature import (CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, SignatureInfo,
                                               SignatureRunner)


def _debug_string(servable: SignatureRunner, sig: SignatureInfo) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(servable.signature_def(sig.name))


def check_classification(servable: SignatureRunner, sig: SignatureInfo) -> None:
    """classifier.cc `PreProcessClassification`."""
    if servable.method_name_check and sig.method_name != CLASSIFY_METHOD:
        raise ServingError("INVALID_ARGUMENT", "Expected classification signature method_name to be "
                           f"{CLASSIFY_METHOD}. Was: {sig.method_name}")
    if len(sig.inputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
    if len(sig.outputs) not in (1, 2):
        raise ServingError("INVALID_ARGUMENT", f"Expected one or two output Tensors, found {len(sig.outputs)}")
    if "inputs" not in sig.inputs:
        raise ServingError("INVALID_ARGUMENT",
                           f"No classification inputs found in SignatureDef: {_debug_string(servable, sig)}")
    if "classes" not in sig.outputs and "scores" not in sig.outputs:
        raise ServingError("INVALID_ARGUMENT", 'Expected classification signature outputs to contain at least '
                           f'one of "classes" or "scores". Signature was: {_debug_string(servable, sig)}')


def check_regression(servable: SignatureRunner, sig: SignatureInfo) -> None:
    """regressor.cc `PreProcessRegression`."""
    if servable.method_name_check and sig.method_name != REGRESS_METHOD:
        raise ServingError("INVALID_ARGUMENT", "Expected regression signature method_name to be "
                           f"{REGRESS_METHOD}. Was: {sig.method_name}")
    if len(sig.inputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
    if len(sig.outputs) != 1:
        raise ServingError("INVALID_ARGUMENT", "Expected one output Tensor.")
    if "inputs" not in sig.inputs:
        raise ServingError("INVALID_ARGUMENT",
                           f"No regression inputs found in SignatureDef: {_debug_string(servable, sig)}")
    if "outputs" not in sig.outputs:
        raise ServingError("INVALID_ARGUMENT",
                           f"No regression outputs found in SignatureDef: {_debug_string(servable, sig)}")


def examples(request_input: Any) -> np.ndarray:
    """The request's tf.Examples serialized (context merged into each), as a string tensor."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        blobs = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        ctx = request_input.example_list_with_context.context
        blobs = []
        for e in request_input.example_list_with_context.examples:
            merged = type(ctx)()
            merged.CopyFrom(ctx)
            merged.MergeFrom(e)
            blobs.append(merged.SerializeToString())
    else:
        blobs = []
    if not blobs:
        raise ServingError("INVALID_ARGUMENT", "Input is empty.")
    out = np.empty(len(blobs), dtype=object)
    out[:] = blobs
    return out


def _dtype_name(t: np.ndarray) -> str:
    """TensorFlow's `DataType_Name` of an output array ("DT_FLOAT")."""
    if t.dtype.kind in "OSU":
        return "DT_STRING"
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tf.as_dtype(t.dtype).as_datatype_enum)


def _shape(t: np.ndarray) -> str:
    """`TensorShape::DebugString`: "[2,3]"."""
    return "[" + ",".join(str(d) for d in t.shape) + "]"


def fill_classification(outputs: dict[str, np.ndarray], n: int, result: Any) -> None:
    """classifier.cc `PostProcessClassificationResult`: its checks in its order."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, t, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if t is None:
            continue
        if t.ndim != 2:
            raise ServingError("INVALID_ARGUMENT",
                               f"Expected Tensor shape: [batch_size num_classes] but got {_shape(t)}")
        if _dtype_name(t) != dtype:
            raise ServingError("INVALID_ARGUMENT", f"Expected {name} Tensor of {dtype}. Got: {_dtype_name(t)}")
        if t.shape[0] != n:
            raise ServingError("INVALID_ARGUMENT", f"Expected {name} output batch size of {n}. Got: {t.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError("INVALID_ARGUMENT", "Tensors class and score should match in dim_size(1). "
                           f"Got {classes.shape[1]} vs. {scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    for i in range(n):
        c = result.classifications.add()
        for j in range(num_classes):
            cls = c.classes.add()
            if classes is not None:
                v = classes[i, j]
                cls.label = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            if scores is not None:
                cls.score = float(scores[i, j])


def fill_regression(outputs: dict[str, np.ndarray], n: int, result: Any) -> None:
    """regressor.cc `PostProcessRegressionResult`: its checks in its order."""
    out = outputs["outputs"]
    if not (out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1)):
        raise ServingError("INVALID_ARGUMENT", "Expected output Tensor shape to be either [batch_size] or "
                           f"[batch_size, 1] but got {_shape(out)}")
    if out.shape[0] != n:
        raise ServingError("INVALID_ARGUMENT",
                           f"Input batch size did not match output batch size: {n} vs. {out.shape[0]}")
    if _dtype_name(out) != "DT_FLOAT":
        raise ServingError("INVALID_ARGUMENT", f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(out)}")
    for v in out.reshape(n):
        result.regressions.add().value = float(v)


def _run(servable: SignatureRunner, sig: SignatureInfo, batch: np.ndarray, wanted: tuple[str, ...]) -> dict:
    return servable.run(sig.name, {"inputs": batch}, [k for k in wanted if k in sig.outputs])


def classify(servable: SignatureRunner, request: Any) -> Any:
    """Answer a `ClassificationRequest` with a `ClassificationResponse`."""
    from tensorflow_serving.apis import classification_pb2

    sig = servable.signature(request.model_spec.signature_name, api="classify")
    check_classification(servable, sig)
    batch = examples(request.input)
    resp = classification_pb2.ClassificationResponse()
    servable.fill_spec(resp.model_spec, sig.name)
    fill_classification(_run(servable, sig, batch, ("classes", "scores")), len(batch), resp.result)
    return resp


def regress(servable: SignatureRunner, request: Any) -> Any:
    """Answer a `RegressionRequest` with a `RegressionResponse`."""
    from tensorflow_serving.apis import regression_pb2

    sig = servable.signature(request.model_spec.signature_name, api="regress")
    check_regression(servable, sig)
    batch = examples(request.input)
    resp = regression_pb2.RegressionResponse()
    servable.fill_spec(resp.model_spec, sig.name)
    fill_regression(_run(servable, sig, batch, ("outputs",)), len(batch), resp.result)
    return resp


def multi_inference(servable: SignatureRunner, request: Any) -> Any:
    """Answer a `MultiInferenceRequest`: every task's checks in multi_inference.cc's order, then
    one run per task on the shared input."""
    from tensorflow_serving.apis import inference_pb2

    model_name = ""
    seen: set[str] = set()
    tasks = []
    for task in request.tasks:
        if not task.model_spec.name:
            raise ServingError("INVALID_ARGUMENT", "Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif task.model_spec.name != model_name:
            raise ServingError("INVALID_ARGUMENT",
                               "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        key = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if key in seen:
            raise ServingError("INVALID_ARGUMENT", f"Duplicate evaluation of signature: {key}")
        seen.add(key)
        sig = servable.signatures.get(key)
        if sig is None:
            raise ServingError("INVALID_ARGUMENT", f"Requested signature not found in model graph: {key}")
        if task.method_name == CLASSIFY_METHOD:
            check_classification(servable, sig)
        elif task.method_name == REGRESS_METHOD:
            check_regression(servable, sig)
        else:
            raise ServingError("UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}")
        tasks.append((task.method_name, sig))
    batch = examples(request.input)
    # multi_inference.cc: one computation for every task, the examples counted, then each result
    # checked and filled in
    outputs = [_run(servable, sig, batch, ("classes", "scores") if method == CLASSIFY_METHOD else ("outputs",))
               for method, sig in tasks]
    metrics.observe_examples(model_name, len(batch))
    resp = inference_pb2.MultiInferenceResponse()
    for (method, sig), out in zip(tasks, outputs):
        res = resp.results.add()
        servable.fill_spec(res.model_spec, sig.name)
        if method == CLASSIFY_METHOD:
            fill_classification(out, len(batch), res.classification_result)
        else:
            fill_regression(out, len(batch), res.regression_result)
    return resp
