"""gRPC against REST on one embedded server, for the gRPC/REST ratio of a build or a flag.

A thin command line over the serving harness's modules: bodies (the requests), loadgen (h2load
for gRPC, wrk for REST, the one runner of each), procs (server on core 0, load on core 1),
rounds (launch: start, check real answers, warm up; one_round; summarize). The harness
(benchmarks/serving.py) compares servers; this compares the two protocols of one server, built
from any tree (--pythonpath) with any server flags (--server-flag).

    python benchmarks/h2load_grpc.py body OUT_DIR
        writes the harness's bodies (rest_1.json, rest_64.json, grpc_1.bin, grpc_64.bin)
    python benchmarks/h2load_grpc.py grpc --port P --body grpc_1.bin [-c 32] [-d 5 | -n 20000]
    python benchmarks/h2load_grpc.py rest --port P --body rest_1.json [-c 32] [-d 5]
        one bounded round against a running server; prints loadgen's figures as one JSON line
    python benchmarks/h2load_grpc.py compare --model-base BASE [--rounds 5 -d 4 -c 32 --batch 1
        --pythonpath DIR --server-flag=--enable_batching ...]
        starts `python -m mlserve.server`, checks a real REST and gRPC Predict, warms up, then
        alternates REST and gRPC rounds of -d seconds (the order flips every round) and prints one
        JSON line: each protocol's medians (rps, p50/p90/p99, server CPU), grpc_over_rest, rounds.

Model contract: digits_model, input `Conv1_input` float32 [-1, 28, 28, 1] (benchmarks/make_model.py).
Only 127.0.0.1; every round is bounded in seconds (or, for `grpc -n`, in requests).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the harness's modules sit beside it (benchmarks/ is no package)
    sys.path.insert(0, str(HERE))

from bodies import MODEL_NAME, PREDICT_PATH, write_bodies  # noqa: E402
from loadgen import run_h2load, run_wrk  # noqa: E402
from procs import free_port, stop  # noqa: E402
from rounds import launch, one_round, summarize  # noqa: E402
from targets import Target  # noqa: E402


def embedded_target(model_base: Path, flags: list[str], pythonpath: str | None) -> Target:
    """`python -m mlserve.server` on free ports, from `pythonpath`'s tree when given."""
    grpc_port, rest_port = free_port(), free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    argv = [sys.executable, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
            f"--model_name={MODEL_NAME}", f"--model_base_path={model_base}", *flags]
    return Target(name="embedded", describe=" ".join(["python -m mlserve.server", *flags]), argv=argv,
                  rest_port=rest_port, grpc_port=grpc_port, env=env)


def compare(args: argparse.Namespace) -> dict:
    """Alternating REST and gRPC rounds against one server; medians of each protocol."""
    flags = args.server_flag or []
    with tempfile.TemporaryDirectory(prefix="h2load-grpc-") as tmp:
        work = Path(tmp)
        files = write_bodies(work)
        target = embedded_target(Path(args.model_base).resolve(), flags, args.pythonpath)
        live = launch(target, files, work, args)  # stops the server itself if it fails
        try:
            rounds: dict[str, list[dict]] = {"rest": [], "grpc": []}
            for r in range(args.rounds):
                for protocol in (("rest", "grpc") if r % 2 == 0 else ("grpc", "rest")):
                    rounds[protocol].append(one_round(live, files, protocol, args.batch,
                                                      args.connections, args.seconds))
        finally:
            stop(live.proc)
    rest, grpc_ = summarize(rounds["rest"]), summarize(rounds["grpc"])
    ratio = round(grpc_["rps"] / rest["rps"], 3) if rest.get("rps") and grpc_.get("rps") else None
    return {"batch": args.batch, "connections": args.connections, "rounds": args.rounds,
            "seconds_per_round": args.seconds, "flags": flags, "pythonpath": args.pythonpath,
            "rest": rest, "grpc": grpc_, "grpc_over_rest": ratio,
            "per_round_rps": {k: [r.get("rps") for r in v] for k, v in rounds.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("body")
    p.add_argument("out", type=Path)
    for name in ("grpc", "rest"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--body", type=Path, required=True)
        p.add_argument("-c", "--connections", type=int, default=32)
        p.add_argument("-d", "--seconds", type=int, default=5)
        if name == "grpc":
            p.add_argument("-n", "--requests", type=int, default=None,
                           help="bound the round by this many calls instead of -d seconds")
    p = sub.add_parser("compare")
    p.add_argument("--model-base", required=True)
    p.add_argument("--batch", type=int, choices=(1, 64), default=1, help="images per request")
    p.add_argument("-c", "--connections", type=int, default=32)
    p.add_argument("-d", "--seconds", type=int, default=4, help="seconds per round, both protocols")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds")
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--pythonpath", default=None, help="PYTHONPATH of the server under test (A/B builds)")
    p.add_argument("--server-flag", action="append", help="extra server flag, e.g. --server-flag=--enable_batching")
    args = parser.parse_args(argv)
    if args.cmd == "body":
        args.out.mkdir(parents=True, exist_ok=True)
        print(json.dumps({k: str(v) for k, v in write_bodies(args.out).items()}))
    elif args.cmd == "grpc":
        print(json.dumps(run_h2load(args.port, args.body, args.connections, args.seconds, args.requests)))
    elif args.cmd == "rest":
        url = f"http://127.0.0.1:{args.port}{PREDICT_PATH}"
        print(json.dumps(run_wrk(url, args.body, args.connections, args.seconds)))
    else:
        print(json.dumps(compare(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
