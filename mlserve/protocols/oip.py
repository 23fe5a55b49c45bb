"""The Open Inference Protocol's gRPC messages (`inference.GRPCInferenceService`), for the server's
v2 front-end and mlserve's v2 client alike.

The messages are described here, field by field as the protocol's specification numbers them, and
built at first use by protobuf itself (a `FileDescriptorProto` in a descriptor pool of its own): no
generated code is vendored and no build step is needed. The subset is what the protocol's
health, metadata and inference calls use; the field numbers and types are held equal to an
independent implementation's (tritonclient's generated stubs) by `tests/server/frontends/v2`.
"""
from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

PACKAGE = "inference"
SERVICE = "inference.GRPCInferenceService"
FILE = "mlserve_open_inference_grpc.proto"

# protobuf field types (descriptor.proto FieldDescriptorProto.Type) and labels
_DOUBLE, _INT64, _UINT64, _BOOL, _STRING, _MESSAGE, _BYTES, _UINT32, _FLOAT, _INT32 = 1, 3, 4, 8, 9, 11, 12, 13, 2, 5
_ONE, _MANY = 1, 3

# name -> fields (name, number, type, label, message type or None); nested messages as "Outer.Inner"
_PARAMS = ("parameters", 4, _MESSAGE, _MANY, "map")
_MESSAGES: dict[str, list[tuple]] = {
    "ServerLiveRequest": [], "ServerLiveResponse": [("live", 1, _BOOL, _ONE, None)],
    "ServerReadyRequest": [], "ServerReadyResponse": [("ready", 1, _BOOL, _ONE, None)],
    "ModelReadyRequest": [("name", 1, _STRING, _ONE, None), ("version", 2, _STRING, _ONE, None)],
    "ModelReadyResponse": [("ready", 1, _BOOL, _ONE, None)],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("name", 1, _STRING, _ONE, None), ("version", 2, _STRING, _ONE, None),
                               ("extensions", 3, _STRING, _MANY, None)],
    "ModelMetadataRequest": [("name", 1, _STRING, _ONE, None), ("version", 2, _STRING, _ONE, None)],
    "ModelMetadataResponse": [("name", 1, _STRING, _ONE, None), ("versions", 2, _STRING, _MANY, None),
                              ("platform", 3, _STRING, _ONE, None),
                              ("inputs", 4, _MESSAGE, _MANY, "ModelMetadataResponse.TensorMetadata"),
                              ("outputs", 5, _MESSAGE, _MANY, "ModelMetadataResponse.TensorMetadata")],
    "ModelMetadataResponse.TensorMetadata": [("name", 1, _STRING, _ONE, None), ("datatype", 2, _STRING, _ONE, None),
                                             ("shape", 3, _INT64, _MANY, None)],
    "InferParameter": [("bool_param", 1, _BOOL, _ONE, "oneof"), ("int64_param", 2, _INT64, _ONE, "oneof"),
                       ("string_param", 3, _STRING, _ONE, "oneof"), ("double_param", 4, _DOUBLE, _ONE, "oneof"),
                       ("uint64_param", 5, _UINT64, _ONE, "oneof")],
    "InferTensorContents": [("bool_contents", 1, _BOOL, _MANY, None), ("int_contents", 2, _INT32, _MANY, None),
                            ("int64_contents", 3, _INT64, _MANY, None), ("uint_contents", 4, _UINT32, _MANY, None),
                            ("uint64_contents", 5, _UINT64, _MANY, None), ("fp32_contents", 6, _FLOAT, _MANY, None),
                            ("fp64_contents", 7, _DOUBLE, _MANY, None), ("bytes_contents", 8, _BYTES, _MANY, None)],
    "ModelInferRequest": [("model_name", 1, _STRING, _ONE, None), ("model_version", 2, _STRING, _ONE, None),
                          ("id", 3, _STRING, _ONE, None), _PARAMS,
                          ("inputs", 5, _MESSAGE, _MANY, "ModelInferRequest.InferInputTensor"),
                          ("outputs", 6, _MESSAGE, _MANY, "ModelInferRequest.InferRequestedOutputTensor"),
                          ("raw_input_contents", 7, _BYTES, _MANY, None)],
    "ModelInferRequest.InferInputTensor": [("name", 1, _STRING, _ONE, None), ("datatype", 2, _STRING, _ONE, None),
                                           ("shape", 3, _INT64, _MANY, None), _PARAMS,
                                           ("contents", 5, _MESSAGE, _ONE, "InferTensorContents")],
    "ModelInferRequest.InferRequestedOutputTensor": [("name", 1, _STRING, _ONE, None),
                                                     ("parameters", 2, _MESSAGE, _MANY, "map")],
    "ModelInferResponse": [("model_name", 1, _STRING, _ONE, None), ("model_version", 2, _STRING, _ONE, None),
                           ("id", 3, _STRING, _ONE, None), _PARAMS,
                           ("outputs", 5, _MESSAGE, _MANY, "ModelInferResponse.InferOutputTensor"),
                           ("raw_output_contents", 6, _BYTES, _MANY, None)],
    "ModelInferResponse.InferOutputTensor": [("name", 1, _STRING, _ONE, None), ("datatype", 2, _STRING, _ONE, None),
                                             ("shape", 3, _INT64, _MANY, None), _PARAMS,
                                             ("contents", 5, _MESSAGE, _ONE, "InferTensorContents")],
}
# the service's unary methods: name -> (request, response)
METHODS = {name: (f"{name}Request", f"{name}Response")
           for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")}


def _file() -> object:
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.FileDescriptorProto(name=FILE, package=PACKAGE, syntax="proto3")
    made: dict[str, object] = {}
    for full in _MESSAGES:  # outer messages come before their nested ones in the table
        outer, _, inner = full.partition(".")
        parent = made[outer].nested_type if inner else proto.message_type  # type: ignore[attr-defined]
        made[full] = parent.add(name=inner or outer)
    for full, fields in _MESSAGES.items():
        message = made[full]
        for name, number, kind, label, ref in fields:
            field = message.field.add(name=name, number=number, type=kind, label=label)  # type: ignore[attr-defined]
            if ref == "map":  # map<string, InferParameter>: a nested entry message
                entry = message.nested_type.add(name="ParametersEntry")  # type: ignore[attr-defined]
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=_STRING, label=_ONE)
                entry.field.add(name="value", number=2, type=_MESSAGE, label=_ONE, type_name=".inference.InferParameter")
                field.type_name = f".{PACKAGE}.{full}.ParametersEntry"
            elif ref == "oneof":
                if not message.oneof_decl:  # type: ignore[attr-defined]
                    message.oneof_decl.add(name="parameter_choice")  # type: ignore[attr-defined]
                field.oneof_index = 0
            elif ref is not None:
                field.type_name = f".{PACKAGE}.{ref}"
    service = proto.service.add(name=SERVICE.rpartition(".")[2])
    for name, (request, response) in METHODS.items():
        service.method.add(name=name, input_type=f".{PACKAGE}.{request}", output_type=f".{PACKAGE}.{response}")
    return proto


@lru_cache(maxsize=1)
def messages() -> SimpleNamespace:
    """The message classes, by their protocol names (`messages().ModelInferRequest`, ...)."""
    from google.protobuf import descriptor_pool, message_factory

    # A pool of its own: the same names may be loaded by another implementation in this process
    # (tritonclient's stubs in the default pool), and a second definition there is refused.
    pool = descriptor_pool.DescriptorPool()
    descriptor = pool.Add(_file())
    classes = {name: message_factory.GetMessageClass(descriptor.message_types_by_name[name])
               for name in _MESSAGES if "." not in name}
    return SimpleNamespace(**classes)


def method_path(name: str) -> str:
    """The HTTP/2 path of one of the service's methods."""
    return f"/{SERVICE}/{name}"
