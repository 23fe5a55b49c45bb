"""Generated hostile gRPC calls for TF Serving's API, built with the official stubs' messages.

Seeded, so a run is repeatable: malformed `PredictRequest`s (TensorProtos of every dtype, odd
and huge shapes, wrong-sized `tensor_content`, half/complex/resource fields, unknown ranks),
`ModelSpec`s (empty, long, odd version choices and labels), Classify/Regress/MultiInference
inputs (tf.Example lists, example-in-context, empty and mixed features), GetModelMetadata and
GetModelStatus requests, reload configs, and raw bytes that parse as no message at all. Sent to
any gRPC port (the embedded server's, whichever front-end serves it): `run(port, n)` counts the
status codes and names what answered INTERNAL or UNKNOWN. Used by benchmarks/abuse.py and, with
a few hundred calls, by tests/server/frontends/grpc/test_limits_grpc.py.
"""
from __future__ import annotations

import random
from typing import Any

SERVICES = {
    "Predict": "/tensorflow.serving.PredictionService/Predict",
    "Classify": "/tensorflow.serving.PredictionService/Classify",
    "Regress": "/tensorflow.serving.PredictionService/Regress",
    "MultiInference": "/tensorflow.serving.PredictionService/MultiInference",
    "GetModelMetadata": "/tensorflow.serving.PredictionService/GetModelMetadata",
    "GetModelStatus": "/tensorflow.serving.ModelService/GetModelStatus",
    "HandleReloadConfigRequest": "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
}
_WEIGHTS = {"Predict": 6, "Classify": 2, "Regress": 2, "MultiInference": 2, "GetModelMetadata": 1,
            "GetModelStatus": 1, "HandleReloadConfigRequest": 1}


class Generator:
    """`next()` -> (method name, serialized request bytes), from one seeded stream."""

    def __init__(self, model: str, seed: int = 2, reload: bool = True) -> None:
        from tensorflow.core.framework import types_pb2

        self.rng = random.Random(seed)
        self.model = model
        self.methods = [m for m in _WEIGHTS if reload or m != "HandleReloadConfigRequest"]
        self.weights = [_WEIGHTS[m] for m in self.methods]
        self.dtypes = [types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT32, types_pb2.DT_INT64,
                       types_pb2.DT_UINT8, types_pb2.DT_STRING, types_pb2.DT_BOOL, types_pb2.DT_HALF,
                       types_pb2.DT_BFLOAT16, types_pb2.DT_COMPLEX64, types_pb2.DT_RESOURCE,
                       types_pb2.DT_VARIANT, types_pb2.DT_UINT64, types_pb2.DT_INVALID, types_pb2.DT_FLOAT_REF,
                       999, -3]

    # -- pieces ----------------------------------------------------------------------------

    def name(self) -> str:
        r = self.rng
        if r.random() < 0.7:
            return self.model
        return r.choice(["", "nope", "n" * r.choice([300, 5000]), self.model + "\x00", "../" + self.model, "é" * 3])

    def spec(self, spec: Any) -> None:
        r = self.rng
        spec.name = self.name()
        choice = r.randint(0, 7)
        if choice == 1:
            spec.version.value = r.choice([-1, 0, 1, 2, 2**62, -2**63])
        elif choice == 2:
            spec.version_label = r.choice(["", "stable", "x" * 400, "\x00"])
        elif choice == 3:
            spec.version.SetInParent()
        if r.random() < 0.5:
            spec.signature_name = r.choice(["", "serving_default", "nope", "x" * 500, "classification",
                                            "regression", "predict", "\x00"])

    def tensor(self, t: Any) -> None:
        r = self.rng
        t.dtype = r.choice(self.dtypes)
        if r.random() < 0.05:
            t.tensor_shape.unknown_rank = True
        for _ in range(r.choice([0, 1, 1, 2, 4, 4, 7])):
            t.tensor_shape.dim.add(size=r.choice([-5, -1, 0, 1, 2, 28, 28, 1000, 2**31, 2**40, 2**62]),
                                   name=r.choice(["", "", "d"]))
        kind = r.randint(0, 9)
        if kind == 0:
            t.tensor_content = bytes(r.getrandbits(8) for _ in range(r.choice([0, 1, 3, 4, 8, 64, 3136])))
        elif kind == 1:
            t.float_val.extend(r.random() for _ in range(r.randint(0, 40)))
        elif kind == 2:
            t.string_val.extend(bytes(r.getrandbits(8) for _ in range(r.randint(0, 6)))
                                for _ in range(r.randint(0, 5)))
        elif kind == 3:
            t.int_val.extend(r.randint(-2**31, 2**31 - 1) for _ in range(r.randint(0, 30)))
        elif kind == 4:
            t.half_val.extend(r.randint(0, 65535) for _ in range(r.randint(0, 10)))
        elif kind == 5:
            t.int64_val.extend(r.randint(-2**63, 2**63 - 1) for _ in range(r.randint(0, 10)))
        elif kind == 6:
            t.bool_val.extend(r.random() < 0.5 for _ in range(r.randint(0, 10)))
        elif kind == 7:
            t.double_val.extend(r.choice([float("nan"), float("inf"), 1e308, -0.0]) for _ in range(r.randint(0, 5)))
        elif kind == 8:
            t.scomplex_val.extend(r.random() for _ in range(r.randint(0, 7)))
            t.uint64_val.extend(r.randint(0, 2**64 - 1) for _ in range(r.randint(0, 3)))
        # kind 9: no values at all

    def examples(self, inp: Any) -> None:
        r = self.rng
        which = r.randint(0, 3)
        if which == 3:
            return  # no input at all
        if which == 0:
            target = inp.example_list.examples
        else:
            ctx = inp.example_list_with_context
            self.example(ctx.context)
            target = ctx.examples
        for _ in range(r.choice([0, 1, 2, 5])):
            self.example(target.add())

    def example(self, ex: Any) -> None:
        r = self.rng
        for _ in range(r.randint(0, 3)):
            feature = ex.features.feature[r.choice(["x", "inputs", "", "y" * 200, "\x00"])]
            kind = r.randint(0, 3)
            if kind == 0:
                feature.float_list.value.extend(r.random() for _ in range(r.randint(0, 800)))
            elif kind == 1:
                feature.int64_list.value.extend(r.randint(-9, 9) for _ in range(r.randint(0, 5)))
            elif kind == 2:
                feature.bytes_list.value.extend(b"b" * r.randint(0, 4) for _ in range(r.randint(0, 3)))

    # -- requests --------------------------------------------------------------------------

    def next(self) -> tuple[str, bytes]:
        from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                             inference_pb2, model_management_pb2, predict_pb2, regression_pb2)

        r = self.rng
        which = r.choices(self.methods, self.weights)[0]
        if r.random() < 0.1:  # bytes that are no message, or a truncated one
            data = bytes(r.getrandbits(8) for _ in range(r.randint(0, 80)))
            return which, r.choice([data, b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\xff" * 9])
        if which == "Predict":
            req: Any = predict_pb2.PredictRequest()
            if r.random() < 0.9:
                self.spec(req.model_spec)
            for _ in range(r.choice([0, 1, 1, 1, 2, 3])):
                self.tensor(req.inputs[r.choice(["Conv1_input", "Conv1_input", "x", "", "\x00"])])
            for _ in range(r.choice([0, 0, 1, 2])):
                req.output_filter.append(r.choice(["softmax", "nope", "", "dense"]))
        elif which in ("Classify", "Regress"):
            req = (classification_pb2.ClassificationRequest() if which == "Classify"
                   else regression_pb2.RegressionRequest())
            if r.random() < 0.9:
                self.spec(req.model_spec)
            self.examples(req.input)
        elif which == "MultiInference":
            req = inference_pb2.MultiInferenceRequest()
            for _ in range(r.choice([0, 1, 2, 3])):
                task = req.tasks.add()
                self.spec(task.model_spec)
                task.method_name = r.choice(["tensorflow/serving/classify", "tensorflow/serving/regress",
                                             "tensorflow/serving/predict", "", "nope"])
            self.examples(req.input)
        elif which == "GetModelMetadata":
            req = get_model_metadata_pb2.GetModelMetadataRequest()
            if r.random() < 0.9:
                self.spec(req.model_spec)
            for _ in range(r.choice([0, 1, 1, 2])):
                req.metadata_field.append(r.choice(["signature_def", "signature_def", "nope", ""]))
        elif which == "GetModelStatus":
            req = get_model_status_pb2.GetModelStatusRequest()
            if r.random() < 0.9:
                self.spec(req.model_spec)
        else:
            req = model_management_pb2.ReloadConfigRequest()
            kind = r.randint(0, 3)
            if kind == 0:
                req.config.model_config_list.config.add(name=self.model,
                                                        base_path=r.choice(["../../..", "rel", ""]))
            elif kind == 1:
                req.config.model_config_list.SetInParent()  # would unload every model
            elif kind == 2:
                req.config.custom_model_config.SetInParent()
        return which, req.SerializeToString()


def run(port: int, n: int, model: str, seed: int = 2, reload: bool = True, timeout: float = 30) -> dict:
    """Send `n` generated calls to 127.0.0.1:`port`, one at a time; count the answers' codes."""
    import grpc

    gen = Generator(model, seed, reload)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", -1)])
    calls = {m: channel.unary_unary(path) for m, path in SERVICES.items()}
    codes: dict[str, int] = {}
    per_method: dict[str, int] = {}
    internal: dict[str, int] = {}  # which call and message gave INTERNAL/UNKNOWN
    try:
        for _ in range(n):
            which, payload = gen.next()
            per_method[which] = per_method.get(which, 0) + 1
            try:
                calls[which](payload, timeout=timeout)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
                if code in ("INTERNAL", "UNKNOWN"):
                    key = f"{which}: {(e.details() or '')[:100]}"
                    internal[key] = internal.get(key, 0) + 1
            codes[code] = codes.get(code, 0) + 1
    finally:
        channel.close()
    return {"calls": n, "per_method": dict(sorted(per_method.items())), "codes": dict(sorted(codes.items())),
            "internal_or_unknown": codes.get("INTERNAL", 0) + codes.get("UNKNOWN", 0),
            "internal_details": dict(sorted(internal.items(), key=lambda kv: -kv[1])[:15])}
