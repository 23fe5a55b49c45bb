#!/usr/bin/env bash
# The whole workflow, end to end: train -> export -> serve (detached) -> predict --plot -> stop.
# `make demo` runs this with MLSERVE_HOME=out/demo; MLSERVE_REST_PORT / MLSERVE_GRPC_PORT move the
# server off 8501/8500 and MLSERVE_URL / MLSERVE_GRPC_SERVER point predict at it.
set -euo pipefail
MLSERVE=${MLSERVE:-mlserve}

$MLSERVE train
$MLSERVE export                      # the next free version under the model base path
$MLSERVE serve --detach              # auto: tensorflow_model_server, Docker, else embedded
trap '$MLSERVE stop --all' EXIT      # never leave a server behind, even when predict fails
$MLSERVE status
$MLSERVE predict --plot              # three test digits; prints the table and the PNG's path
