"""KServe's own v2 clients (`kserve.InferenceRESTClient`, `InferenceGRPCClient`) against a running
mlserve server: health, readiness, and infer with JSON and binary tensors over REST and over gRPC.
A check by hand, not part of the suite: the `kserve` package is large, so it lives in a venv of
its own (`python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install kserve`).

    /tmp/kvenv/bin/python benchmarks/kserve_clients.py --rest 127.0.0.1:8501 --grpc 127.0.0.1:8500

Prints one line per check and exits non-zero at the first that fails. Only the addresses given.
"""
from __future__ import annotations

import argparse
import asyncio
import sys


async def check(rest_address: str, grpc_address: str, model: str) -> None:
    import numpy as np
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    base = f"http://{rest_address}"
    rest = InferenceRESTClient(RESTConfig(protocol="v2"))
    try:
        assert await rest.is_server_live(base) and await rest.is_server_ready(base)
        assert await rest.is_model_ready(base, model)
        print("REST: live, ready, model ready")
        for binary in (False, True):
            tensor = InferInput("Conv1_input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            result = await rest.infer(base, InferRequest(model_name=model, infer_inputs=[tensor], request_id="k"),
                                      model_name=model)
            out = result.outputs[0].as_numpy()
            assert out.shape == (2, 10) and np.allclose(out.sum(1), 1, atol=1e-4), out
            print(f"REST infer (binary={binary}): {result.outputs[0].name} {out.shape}")
    finally:
        await rest.close()
    grpc_client = InferenceGRPCClient(grpc_address)
    try:
        assert await grpc_client.is_server_live() and await grpc_client.is_model_ready(model)
        tensor = InferInput("Conv1_input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = await grpc_client.infer(InferRequest(model_name=model, infer_inputs=[tensor], request_id="g"))
        out = result.outputs[0].as_numpy()
        assert out.shape == (2, 10) and np.allclose(out.sum(1), 1, atol=1e-4), out
        print(f"gRPC: live, model ready, infer {result.outputs[0].name} {out.shape}")
    finally:
        await grpc_client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rest", default="127.0.0.1:8501")
    parser.add_argument("--grpc", default="127.0.0.1:8500")
    parser.add_argument("--model", default="digits_model")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # kserve parses the command line when imported
    asyncio.run(check(args.rest, args.grpc, args.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
