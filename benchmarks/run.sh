#!/usr/bin/env bash
# Serving benchmark: mlserve's embedded server vs FastAPI baselines and `mlflow models serve`.
#   benchmarks/run.sh            quick mode: 10 s per scenario in alternating rounds, about 6 minutes
#   benchmarks/run.sh --long     30 s per scenario and a 60 s memory run, about 16 minutes
#   benchmarks/run.sh --help     every option of benchmarks/serving.py (installs nothing)
# Installs what it needs first: fastapi/uvicorn into the project venv (the `bench` extra), the C
# load generators from Debian (wrk for REST, h2load from nghttp2-client for gRPC), and mlflow into
# benchmarks/.venv only (it pins many libraries). Set BENCH_NO_MLFLOW=1 (or pass --no-mlflow) to
# skip mlflow altogether.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || { echo "error: no project venv at .venv (run: make install)" >&2; exit 2; }

case " $* " in
    *" --help "*|*" -h "*)
        echo "benchmarks/run.sh [--long] [--no-mlflow] [OPTIONS]: installs the bench extra, wrk,"
        echo "nghttp2-client (h2load) and mlflow when missing, then runs benchmarks/serving.py."
        echo
        exec "$PY" benchmarks/serving.py --help ;;
esac

if ! "$PY" -c "import fastapi, uvicorn" 2>/dev/null; then
    echo "installing the bench extra (fastapi, uvicorn) into the project venv" >&2
    "$PY" -m pip install -q -e '.[bench]'
fi

# tool:Debian package
for need in wrk:wrk h2load:nghttp2-client taskset:util-linux; do
    tool=${need%%:*}; package=${need#*:}
    command -v "$tool" >/dev/null && continue
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing $package ($tool) from Debian" >&2
        (apt-get install -y -q "$package" || { apt-get update -q && apt-get install -y -q "$package"; }) >&2
    else
        echo "error: $tool is missing; install it with: sudo apt-get install -y $package" >&2
        exit 2
    fi
done

case " $* " in *" --no-mlflow "*) BENCH_NO_MLFLOW=1 ;; esac
if [ -z "${BENCH_NO_MLFLOW:-}" ] && [ ! -x benchmarks/.venv/bin/mlflow ]; then
    # mlflow serves with --env-manager local, so its venv needs the same TensorFlow as ours.
    tf_version=$("$PY" -c "import importlib.metadata as m; print(m.version('tensorflow'))")
    echo "installing mlflow + tensorflow-cpu==$tf_version into benchmarks/.venv (once)" >&2
    if ! { "$PY" -m venv benchmarks/.venv \
           && benchmarks/.venv/bin/python -m pip install -q --upgrade pip \
           && { timeout 1200 benchmarks/.venv/bin/python -m pip install -q mlflow "tensorflow-cpu==$tf_version" \
                || timeout 1200 benchmarks/.venv/bin/python -m pip install -q mlflow "tensorflow==$tf_version"; }; } >&2
    then
        echo "warning: could not install mlflow; the benchmark reports it as skipped" >&2
        rm -rf benchmarks/.venv
    fi
fi

export TF_CPP_MIN_LOG_LEVEL=2
exec "$PY" benchmarks/serving.py "$@"
