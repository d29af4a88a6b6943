"""Fixtures of the reliability tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskledger import TaskLedger


@pytest.fixture
def other(database_url: str, schema: str, ledger: TaskLedger) -> Iterator[TaskLedger]:
    """A second TaskLedger on the test's schema, as another server instance."""
    del ledger  # opened first, so the schema is migrated
    with TaskLedger.open(database_url, schema=schema, project=False) as opened:
        yield opened
