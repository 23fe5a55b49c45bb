"""`:classify` and `:regress` as TF Serving runs them without `--enable_signature_method_name_check`
(the default): the signature's tensors are looked up by the Classify/Regress constants ("inputs",
"classes", "scores", "outputs") and what is missing is worded by `PreProcessClassification` /
`PreProcessRegression`; the outputs are checked by `PostProcess*Result` (classifier.cc,
regressor.cc). Over REST and gRPC alike."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import grpc
import pytest
import requests

from support.servers import ServerProcess

NAME = "half_plus_two"


def _tensor(key: str, name: str, dtype: str, dims: list[int]) -> str:
    shape = "".join(f"      dim {{\n        size: {d}\n      }}\n" for d in dims)
    return (f"  key: \"{key}\"\n  value {{\n    name: \"{name}\"\n    dtype: {dtype}\n"
            f"    tensor_shape {{\n{shape}    }}\n  }}\n")


def _signature(inputs: str, outputs: str, method: str) -> str:
    """SignatureDef::DebugString of a half_plus_two signature (protobuf text format)."""
    return f"inputs {{\n{inputs}}}\noutputs {{\n{outputs}}}\nmethod_name: \"tensorflow/serving/{method}\"\n"


PREDICT_SIG = _signature(_tensor("x", "x:0", "DT_FLOAT", [-1, 1]), _tensor("y", "y:0", "DT_FLOAT", [-1, 1]), "predict")
CLASSIFY_SIG = _signature(_tensor("inputs", "tf_example:0", "DT_STRING", [-1]),
                          _tensor("scores", "y:0", "DT_FLOAT", [-1, 1]), "classify")
REGRESS_SIG = _signature(_tensor("inputs", "tf_example:0", "DT_STRING", [-1]),
                         _tensor("outputs", "y:0", "DT_FLOAT", [-1, 1]), "regress")

WRONG_METHOD = [
    ("classify", "", f"No classification inputs found in SignatureDef: {PREDICT_SIG}"),
    ("regress", "", f"No regression inputs found in SignatureDef: {PREDICT_SIG}"),
    ("regress", "classify_x_to_y", f"No regression outputs found in SignatureDef: {CLASSIFY_SIG}"),
    ("classify", "regress_x_to_y", 'Expected classification signature outputs to contain at least one of '
                                   f'"classes" or "scores". Signature was: {REGRESS_SIG}'),
    ("classify", "nope", "No signature was found with the name: nope"),
]


@pytest.fixture
def hp2(start_server: Callable[..., ServerProcess], half_plus_two_base: Path) -> ServerProcess:
    return start_server(f"--model_name={NAME}", f"--model_base_path={half_plus_two_base}", models=[NAME])


def _grpc_call(server: ServerProcess, verb: str, model: str, signature: str, features: dict[str, float]) -> Any:
    from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc, regression_pb2

    request = (classification_pb2.ClassificationRequest() if verb == "classify"
               else regression_pb2.RegressionRequest())
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    example = request.input.example_list.examples.add()
    for key, value in features.items():
        example.features.feature[key].float_list.value.append(value)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return getattr(stub, verb.capitalize())(request, timeout=30)


def _both(server: ServerProcess, verb: str, model: str, signature: str, message: str) -> None:
    body: dict[str, Any] = {"examples": [{"x": 1.0}]}
    if signature:
        body["signature_name"] = signature
    r = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/{model}:{verb}", json=body, timeout=30)
    assert (r.status_code, r.json()) == (400, {"error": message})
    with pytest.raises(grpc.RpcError) as err:
        _grpc_call(server, verb, model, signature, {"x": 1.0})
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_signatures_of_another_method_without_the_check(hp2: ServerProcess) -> None:
    for verb, signature, message in WRONG_METHOD:
        _both(hp2, verb, NAME, signature, message)
    # the signatures of the right method still serve
    assert _grpc_call(hp2, "regress", NAME, "regress_x_to_y", {"x": 1.0}).result.regressions[0].value == 2.5
    assert _grpc_call(hp2, "classify", NAME, "classify_x_to_y", {"x": 1.0}
                      ).result.classifications[0].classes[0].score == 2.5


def _export_odd_outputs(path: Path) -> None:
    """Classify/regress signatures whose outputs PostProcess*Result refuses, one per check."""
    import tensorflow as tf

    def n(inputs: Any) -> Any:
        return tf.shape(inputs)[0]

    def ones(shape: Any, dtype: Any) -> Any:
        return tf.ones(shape, dtype)

    specs = {
        "scores_double": lambda s: {"scores": ones([n(s), 2], tf.float64)},
        "classes_int": lambda s: {"classes": ones([n(s), 2], tf.int64)},
        "scores_rank1": lambda s: {"scores": ones([n(s)], tf.float32)},
        "scores_batch": lambda s: {"scores": ones([n(s) + 1, 2], tf.float32)},
        "classes_vs_scores": lambda s: {"classes": tf.fill([n(s), 2], "a"), "scores": ones([n(s), 3], tf.float32)},
        "outputs_double": lambda s: {"outputs": ones([n(s)], tf.float64)},
        "outputs_wide": lambda s: {"outputs": ones([n(s), 2], tf.float32)},
        "outputs_batch": lambda s: {"outputs": ones([n(s) + 1], tf.float32)},
    }
    signatures = {}
    for key, body in specs.items():
        fn = tf.function(body, input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        signatures[key] = fn.get_concrete_function()
    module = tf.Module()
    module.fns = list(signatures.values())
    tf.saved_model.save(module, str(path), signatures=signatures)


ODD_OUTPUTS = [
    ("classify", "scores_double", "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE"),
    ("classify", "classes_int", "Expected classes Tensor of DT_STRING. Got: DT_INT64"),
    ("classify", "scores_rank1", "Expected Tensor shape: [batch_size num_classes] but got [1]"),
    ("classify", "scores_batch", "Expected scores output batch size of 1. Got: 2"),
    ("classify", "classes_vs_scores", "Tensors class and score should match in dim_size(1). Got 2 vs. 3"),
    ("regress", "outputs_double", "Expected output Tensor of DT_FLOAT.  Got: DT_DOUBLE"),
    ("regress", "outputs_wide", "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                                "but got [1,2]"),
    ("regress", "outputs_batch", "Input batch size did not match output batch size: 1 vs. 2"),
]


def test_outputs_checked_as_post_process_result_checks_them(start_server: Callable[..., ServerProcess],
                                                            tmp_path: Path) -> None:
    base = tmp_path / "models" / "odd"
    _export_odd_outputs(base / "1")
    server = start_server("--model_name=odd", f"--model_base_path={base}", models=["odd"])
    for verb, signature, message in ODD_OUTPUTS:
        _both(server, verb, "odd", signature, message)
