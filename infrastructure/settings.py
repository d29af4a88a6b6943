"""Database URL resolution and checks that run before any connection is made."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from domain.errors import ConfigurationError

DATABASE_URL_VARIABLE = "TASKLEDGER_DATABASE_URL"
SCHEMA_VARIABLE = "TASKLEDGER_SCHEMA"
DEFAULT_SCHEMA = "public"
# Supabase's transaction-mode pooler (Supavisor) listens on this port.
TRANSACTION_POOLER_PORT = "6543"

# 48 characters leave room for the NOTIFY channels "<schema>_task_updates" and
# "<schema>_task_events" within PostgreSQL's 63-byte identifier limit.
MAX_SCHEMA_LENGTH = 48
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class DatabaseSettings:
    """Connection string and schema of the ledger's tables."""

    conninfo: str
    schema: str = DEFAULT_SCHEMA

    @property
    def masked(self) -> str:
        return mask_conninfo(self.conninfo)


def validate_schema(name: str) -> str:
    if not _SCHEMA_NAME.match(name):
        raise ConfigurationError(
            f"schema name {name!r} is invalid: use lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most "
            f"{MAX_SCHEMA_LENGTH} characters"
        )
    return name


def parse_database_url(url: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except Exception as error:
        raise ConfigurationError(
            f"database URL {mask_conninfo(url)} is invalid: expected "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from error


def check_connection_mode(url: str) -> None:
    """Reject Supabase's transaction-mode pooler, which breaks LISTEN and locks."""
    params = parse_database_url(url)
    if params.get("port") == TRANSACTION_POOLER_PORT:
        raise ConfigurationError(
            f"database URL {mask_conninfo(url)} points at a transaction-mode "
            f"pooler (port {TRANSACTION_POOLER_PORT}), where LISTEN, advisory "
            "locks and prepared statements do not work; use the direct "
            "connection or the session-mode pooler (port 5432) instead"
        )


def mask_conninfo(url: str) -> str:
    """Return the URL or conninfo with its password replaced by ***."""
    if "://" in url:
        # Up to the last "@", so a password with an unencoded "@" stays hidden.
        masked = re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)
        return re.sub(r"([?&]password=)[^&]*", r"\1***", masked)
    try:
        params = conninfo_to_dict(url)
    except Exception:
        return "(unparsable connection string)"
    if "password" in params:
        params["password"] = "***"  # noqa: S105
    return make_conninfo("", **params)


def resolve_database_url(url: str | None) -> str | None:
    """Return the explicit URL, else TASKLEDGER_DATABASE_URL, else None.

    An empty URL raises ConfigurationError, because a script whose URL variable
    expanded to nothing would otherwise write to the embedded server.
    """
    if url is not None and not url.strip():
        raise ConfigurationError(
            "the database URL is empty; give a PostgreSQL URL, or leave out "
            "--database-url (database_url in Python) to use the embedded server"
        )
    variable = os.environ.get(DATABASE_URL_VARIABLE)
    if url is None and variable is not None and not variable.strip():
        raise ConfigurationError(
            f"{DATABASE_URL_VARIABLE} is set but empty; set it to a PostgreSQL "
            "URL, or unset it to use the embedded server"
        )
    chosen = url or variable or None
    if chosen is not None:
        check_connection_mode(chosen)
    return chosen


def resolve_schema(schema: str | None) -> str:
    return validate_schema(schema or os.environ.get(SCHEMA_VARIABLE) or DEFAULT_SCHEMA)
