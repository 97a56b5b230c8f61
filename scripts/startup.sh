#!/usr/bin/env bash
# Start ONNX Embedding Studio: set up the environment, convert the default model offline, and run
# the Streamlit app on http://localhost:8501.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m streamlit run app.py "$@"
