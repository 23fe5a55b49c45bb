"""TFLite benchmark: the course model as a SavedModel against its int8 model.tflite, in one run.

1. Trains the course model (5 epochs on the offline MNIST sample unless --data says otherwise) and
   exports it three ways: SavedModel only, --tflite float32, --tflite int8. Reports each file's
   size and the test accuracy measured by running it (the int8 target: within 1 point of float32
   and at least 3.5x smaller on disk).
2. Serves the SavedModel and the int8 file (`--prefer_tflite_model`) with the embedded server,
   both pinned to core 0 (`taskset -c 0`); `wrk` on core 1 sends 1 image per REST request
   (benchmarks/predict.lua) at 1 and at 32 connections. Rounds alternate between the two servers
   (the order flips every round) so a slow spell of the shared machine lands on both; figures are
   medians of the rounds (targets: TFLite p50 at 1 connection <= SavedModel's, req/s at 32
   connections >= SavedModel's).

Bounded: `--rounds` x 2 servers x 2 runs of `--seconds`; 127.0.0.1 only; every server stopped.
Writes benchmarks/results/tflite-<time>.json. Run: `.venv/bin/python benchmarks/tflite.py`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# the serving harness's modules: bodies, processes, answer checks, wrk, progress lines
from bodies import MODEL_NAME, PREDICT_PATH, rest_body  # noqa: E402
from checks import check_predictions, http, wait_until  # noqa: E402
from loadgen import run_wrk  # noqa: E402
from procs import free_port, start, stop  # noqa: E402
from rounds import log  # noqa: E402


def prepare(work: Path, epochs: int, data: str) -> dict:
    from mlserve.model.export import export_model
    from mlserve.model.cnn import train

    os.environ["MLSERVE_HOME"] = str(work / "home")
    result = train(epochs=epochs, data=data, seed=1, output=work / "trained")
    bases = {}
    for fmt in ("savedmodel", "float32", "int8"):
        base = work / fmt / MODEL_NAME
        export_model(result.model_path, base, 1, model_name=MODEL_NAME,
                     tflite=None if fmt == "savedmodel" else fmt)
        bases[fmt] = base
    info = {fmt: json.loads((bases[fmt] / "1" / "assets.extra" / "mlserve.json").read_text())
            for fmt in bases}
    f32, i8 = info["float32"]["tflite"], info["int8"]["tflite"]
    return {"bases": bases, "keras_test_accuracy": result.test_accuracy,
            "saved_model_size_bytes": f32["saved_model_size_bytes"],
            "float32": f32, "int8": i8,
            "int8_accuracy_drop_points": round(100 * (f32["test_accuracy"] - i8["test_accuracy"]), 2),
            "int8_smaller_than_float32": round(f32["size_bytes"] / i8["size_bytes"], 2),
            "int8_smaller_than_saved_model": round(f32["saved_model_size_bytes"] / i8["size_bytes"], 2)}


def start_server(base: Path, work: Path, name: str, flags: list[str]) -> tuple:
    rest, grpc = free_port(), free_port()
    logfile = work / f"{name}.log"
    proc = start([sys.executable, "-m", "mlserve.server", f"--port={grpc}", f"--rest_api_port={rest}",
                  f"--model_name={MODEL_NAME}", f"--model_base_path={base}",
                  "--file_system_poll_wait_seconds=0", "--host=127.0.0.1", *flags], logfile,
                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    url = f"http://127.0.0.1:{rest}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/v1/models/{MODEL_NAME}", timeout=2) as r:
            return '"AVAILABLE"' in r.read().decode()

    wait_until(proc, logfile, ready, 120)
    return proc, url + PREDICT_PATH


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per wrk run")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", default="sample")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mlserve-bench-tflite-"))
    log(f"work folder {work}")
    prepared = prepare(work, args.epochs, args.data)
    bases = prepared.pop("bases")
    body = work / "body.json"
    body.write_bytes(rest_body(1))
    servers = {}
    try:
        servers["savedmodel"] = start_server(bases["savedmodel"], work, "savedmodel", [])
        servers["tflite-int8"] = start_server(bases["int8"], work, "tflite-int8", ["--prefer_tflite_model"])
        for _, url in servers.values():
            check_predictions(http("POST", url, body.read_bytes())[1], 1)
        runs: dict[str, dict[str, list]] = {k: {"p50_c1": [], "rps_c32": [], "p50_c32": []} for k in servers}
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                url = servers[name][1]
                one = run_wrk(url, body, 1, args.seconds)
                many = run_wrk(url, body, 32, args.seconds)
                runs[name]["p50_c1"].append(one["p50_ms"])
                runs[name]["rps_c32"].append(many["rps"])
                runs[name]["p50_c32"].append(many["p50_ms"])
                log(f"round {r + 1} {name}: p50 1 conn {one['p50_ms']:.3f} ms, "
                            f"{many['rps']:.0f} req/s at 32 (errors {one['errors'] + many['errors']})")
    finally:
        for proc, _ in servers.values():
            stop(proc)
    medians = {k: {m: round(statistics.median(v), 3) for m, v in runs[k].items()} for k in runs}
    saved, lite = medians["savedmodel"], medians["tflite-int8"]
    checks = {
        "int8 accuracy within 1 point of float32": prepared["int8_accuracy_drop_points"] <= 1.0,
        "int8 >= 3.5x smaller than float32 .tflite": prepared["int8_smaller_than_float32"] >= 3.5,
        "int8 >= 3.5x smaller than the SavedModel": prepared["int8_smaller_than_saved_model"] >= 3.5,
        "TFLite p50 at 1 connection <= SavedModel's": lite["p50_c1"] <= saved["p50_c1"],
        "TFLite req/s at 32 connections >= SavedModel's": lite["rps_c32"] >= saved["rps_c32"],
    }
    report = {"when": dt.datetime.now().isoformat(timespec="seconds"), "rounds": args.rounds,
              "seconds": args.seconds, "cpus": os.cpu_count(), **prepared, "medians": medians,
              "runs": runs, "checks": checks}
    out = HERE / "results" / f"tflite-{dt.datetime.now().strftime('%Y-%m-%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"accuracy  float32 {prepared['float32']['test_accuracy']:.4f}  int8 "
          f"{prepared['int8']['test_accuracy']:.4f}  (drop {prepared['int8_accuracy_drop_points']} points)")
    print(f"size      SavedModel {prepared['saved_model_size_bytes']:,} B  float32 "
          f"{prepared['float32']['size_bytes']:,} B  int8 {prepared['int8']['size_bytes']:,} B")
    for name, m in medians.items():
        print(f"{name:<12} p50 1 conn {m['p50_c1']:.3f} ms   {m['rps_c32']:,.0f} req/s at 32 "
              f"(p50 {m['p50_c32']:.3f} ms)")
    for what, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
