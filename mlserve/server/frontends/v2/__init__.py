"""The Open Inference Protocol (KServe/Triton "v2") over the same data plane as TF Serving's API:
its REST binding on the REST port (`rest.py`, with Triton's binary tensor extension in
`binary.py`) and `inference.GRPCInferenceService` on the gRPC port (`grpc.py`); tensors in and
out of its datatypes in `tensors.py`."""
