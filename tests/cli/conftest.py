"""Run the `taskledger` command line in-process against the test schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from typer.testing import CliRunner, Result

from taskledger.cli import app

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run the CLI with --database-url and --schema of the test's database."""
    monkeypatch.delenv("TASKLEDGER_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(
            app, ["--database-url", database_url, "--schema", schema, *args]
        )

    return run
