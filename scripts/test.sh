#!/usr/bin/env bash
# Set up everything the tests need (see setup.sh --dev), then run the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k parity
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev --skip-model
exec .venv/bin/python -m pytest "$@"
