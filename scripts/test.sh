#!/usr/bin/env bash
# Set up a virtual environment in .venv, then run the linters and the test suite.
# Tests use TASKLEDGER_TEST_DATABASE_URL when set, else an embedded PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'

# A test pushes the migrations with the Supabase CLI, installed from npm into
# node_modules/ (about 130 MB: the binary comes as @supabase/cli-<platform>).
# Without npm or the registry, that test is skipped.
SUPABASE_CLI_VERSION=2.117.0
# The embedded server listens on a Unix socket, which supabase db push cannot
# reach, so the CLI is installed only for a server given by URL.
if [ -n "${TASKLEDGER_TEST_DATABASE_URL:-}" ] && command -v npm >/dev/null 2>&1 &&
    [ "$(node_modules/.bin/supabase --version 2>/dev/null)" != "$SUPABASE_CLI_VERSION" ]; then
    timeout 180 npm install --prefix . --no-save --no-package-lock --no-audit \
        --no-fund --silent "supabase@$SUPABASE_CLI_VERSION" ||
        echo "warning: npm install supabase@$SUPABASE_CLI_VERSION failed;" \
            "the Supabase CLI test will be skipped" >&2
fi

.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
