#!/usr/bin/env bash
# Validate every converted model of the registry and print a table:
#   files present and intact (sizes as recorded), every ONNX variant loads and runs on the provider
#   (and which provider really runs it), parity figures measured at conversion within thresholds
#   (fp32/optimized: max|diff| <= 1e-5 and min cosine >= 0.99999; fp16: min cosine >= 0.999; int8
#   reported). Models not converted yet are listed as skipped.
#
#   ./scripts/check-models.sh [--provider auto|cpu|cuda|...] [--model NAME]... [--variants fp32,int8]
#                             [--no-load] [--json] [--data-dir DIR]
#
# Exit status 0 when every converted model passes, 1 when one fails (2: a usage or settings error).
# `--provider cuda` fails any variant that ONNX Runtime does not really run on CUDA.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${STUDIO_PYTHON:-.venv/bin/python}
[ -x "$python_bin" ] || python_bin=python3
exec "$python_bin" -m engine check "$@"
