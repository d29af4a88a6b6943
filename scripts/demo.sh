#!/usr/bin/env bash
# Set up a virtual environment in .venv, then run the demo on the embedded
# PostgreSQL (or on TASKLEDGER_DATABASE_URL when it is set).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

.venv/bin/python examples/quickstart.py "$@"
