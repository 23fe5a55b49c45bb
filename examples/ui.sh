#!/usr/bin/env bash
# After `make demo`: serve its model with a metrics page, open `mlserve ui`, stop the server when
# the page stops (Ctrl-C). `make ui` runs this with MLSERVE_HOME=out/demo; arguments go to `mlserve ui`.
set -euo pipefail
MLSERVE=${MLSERVE:-mlserve}

$MLSERVE serve --detach --monitoring   # fails with a hint when no model was exported: run make demo
trap '$MLSERVE stop --all' EXIT
$MLSERVE ui "$@"
