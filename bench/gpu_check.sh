#!/bin/sh
# The GPU check: every GPU figure the README quotes, into one JSON file (default gpu_check.json), in
# under 8 minutes on one GPU machine. Without a GPU it runs CI-sized on the CPU and says what is missing.
#   bash bench/gpu_check.sh [out.json]
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" bench/gpu_check.py --out "${1:-gpu_check.json}"
