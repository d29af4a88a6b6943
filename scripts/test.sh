#!/usr/bin/env bash
# Set up a virtual environment in .venv, then run the linters and the test suite.
# Tests use TASKLEDGER_TEST_DATABASE_URL when set, else an embedded PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
