"""The Open Inference Protocol (v2) against TF Serving's API (v1) on one embedded server, with C load
generators: wrk for REST (v1 JSON, v2 JSON, v2 binary), h2load for gRPC (v1 Predict, v2
ModelInfer). Scenarios alternate round by round; medians are printed as one JSON line.

    python benchmarks/v2.py --model-base BASE [--rounds 2 -d 3]

Two loads, as issue #23 asks: 1 image per request at 32 connections (every scenario), and 64 images
per request at 8 connections (v1 JSON against v2 binary, with v2 JSON and v1 gRPC beside them),
whose figure is images/s. Server on core 0, load generator on core 1 (procs); only 127.0.0.1;
every round bounded in seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bodies import MODEL_NAME, grpc_frame, sample_images, write_bodies  # noqa: E402
from h2load_grpc import embedded_target  # noqa: E402
from loadgen import run_h2load, run_wrk  # noqa: E402
from procs import stop  # noqa: E402
from rounds import launch, summarize  # noqa: E402

INFER = f"/v2/models/{MODEL_NAME}/infer"
V2_GRPC = "/inference.GRPCInferenceService/ModelInfer"


def v2_bodies(work: Path, n: int) -> dict[str, Path]:
    """v2 JSON, v2 binary (with its header length) and a framed ModelInferRequest of n images."""
    import numpy as np

    sys.path.insert(0, str(HERE.parent))
    from mlserve.client import v2
    from mlserve.protocols import oip

    images = np.round(sample_images(n), 4).astype(np.float32)
    inputs = {"Conv1_input": images}
    out = {}
    body, _ = v2.infer_body(inputs, binary=False, outputs=["softmax"])
    (out_json := work / f"v2_{n}.json").write_bytes(body)
    out["json"] = out_json
    body, headers = v2.infer_body(inputs, binary=True, outputs=["softmax"])
    (out_bin := work / f"v2_{n}.bin").write_bytes(body)
    out["binary"] = out_bin
    out["binary_header"] = headers[v2.HEADER_LENGTH]
    request = oip.messages().ModelInferRequest(model_name=MODEL_NAME)
    request.inputs.add(name="Conv1_input", datatype="FP32", shape=list(images.shape))
    request.raw_input_contents.append(images.tobytes())
    request.outputs.add(name="softmax")
    (out_grpc := work / f"v2_grpc_{n}.bin").write_bytes(grpc_frame(request.SerializeToString()))
    out["grpc"] = out_grpc
    return out


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-v2-") as tmp:
        work = Path(tmp)
        files = write_bodies(work)
        target = embedded_target(Path(args.model_base).resolve(), [], None)
        live = launch(target, files, work, args)
        rest = f"http://127.0.0.1:{target.rest_port}"
        try:
            results: dict[str, dict] = {}
            for n, connections, names in ((1, 32, ("v1 REST", "v2 JSON", "v2 binary", "v1 gRPC", "v2 gRPC")),
                                          (64, 8, ("v1 REST", "v2 JSON", "v2 binary", "v1 gRPC"))):
                v2f = v2_bodies(work, n)
                binary = {"Content-Type": "application/octet-stream",
                          "Inference-Header-Content-Length": v2f["binary_header"]}
                scenario = {
                    "v1 REST": lambda: run_wrk(target.rest_url, files[f"rest_{n}"],
                                               connections, args.seconds),
                    "v2 JSON": lambda: run_wrk(rest + INFER, v2f["json"], connections, args.seconds),
                    "v2 binary": lambda: run_wrk(rest + INFER, v2f["binary"], connections, args.seconds, binary),
                    "v1 gRPC": lambda: run_h2load(target.grpc_port, files[f"grpc_{n}"], connections, args.seconds),
                    "v2 gRPC": lambda: run_h2load(target.grpc_port, v2f["grpc"], connections, args.seconds,
                                                  path=V2_GRPC),
                }
                run_wrk(rest + INFER, v2f["binary"], 4, 1, binary)  # warm the v2 path
                rounds: dict[str, list] = {name: [] for name in names}
                for r in range(args.rounds):
                    for name in (names if r % 2 == 0 else tuple(reversed(names))):
                        figures = scenario[name]()
                        figures["images_per_s"] = round(figures["rps"] * n, 1)
                        rounds[name].append(figures)
                for name, rs in rounds.items():
                    results[f"{n} image(s) @{connections}: {name}"] = summarize(rs)
        finally:
            stop(live.proc)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-base", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-d", "--seconds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--start-timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
