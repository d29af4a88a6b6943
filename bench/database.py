"""The benchmark's PostgreSQL: a given URL or an embedded server of its own."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from infrastructure.settings import DATABASE_URL_VARIABLE, mask_conninfo


class BenchDatabase:
    """A PostgreSQL server that the benchmark may fill with schemas of its own.

    Without a URL (argument or TASKLEDGER_DATABASE_URL), an embedded PostgreSQL
    (pgserver) starts in a temporary directory that is deleted on close.
    """

    def __init__(self, url: str | None = None) -> None:
        chosen = url or os.environ.get(DATABASE_URL_VARIABLE) or None
        self._server: Any = None
        self._data_dir: str | None = None
        if chosen is None:
            import pgserver  # noqa: PLC0415 (slow import, needed only here)

            self._data_dir = tempfile.mkdtemp(prefix="taskledger-bench-")
            self._server = pgserver.get_server(  # type: ignore[attr-defined]
                self._data_dir, cleanup_mode="delete"
            )
            chosen = str(self._server.get_uri())
        self.url = chosen
        self.embedded = self._server is not None
        self.run_id = uuid.uuid4().hex[:8]
        self._schemas: list[str] = []

    @property
    def masked_url(self) -> str:
        return mask_conninfo(self.url)

    def server_version(self) -> str:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("show server_version").fetchone()
        assert row is not None
        return str(row[0])

    def setting(self, name: str) -> str:
        with psycopg.connect(self.url) as conn:
            row = conn.execute("select current_setting(%s)", (name,)).fetchone()
        assert row is not None
        return str(row[0])

    def new_schema(self, purpose: str) -> str:
        """Create an empty schema named after this run and purpose."""
        name = f"bench_{self.run_id}_{purpose}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("create schema {}").format(sql.Identifier(name)))
        self._schemas.append(name)
        return name

    def drop_schema(self, name: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name))
            )
        if name in self._schemas:
            self._schemas.remove(name)

    @contextmanager
    def schema(self, purpose: str) -> Iterator[str]:
        """Yield a new schema, dropped afterwards."""
        name = self.new_schema(purpose)
        try:
            yield name
        finally:
            self.drop_schema(name)

    def connect(self, schema: str, **kwargs: Any) -> psycopg.Connection[Any]:
        """Open an autocommit connection whose search_path is schema."""
        conn = psycopg.connect(self.url, autocommit=True, **kwargs)
        conn.execute(
            sql.SQL("set search_path to {}, public").format(sql.Identifier(schema))
        )
        return conn

    def close(self) -> None:
        for name in list(self._schemas):
            self.drop_schema(name)
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def __enter__(self) -> BenchDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
