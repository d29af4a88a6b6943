#!/usr/bin/env bash
# Set up a virtual environment in .venv, then run the fleet demo for 20 seconds
# on the embedded PostgreSQL (or on TASKLEDGER_DATABASE_URL when it is set).
# Extra arguments go to `taskledger demo`, e.g. --rate 20 or --agents 6.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

.venv/bin/taskledger demo --seconds 20 "$@"
