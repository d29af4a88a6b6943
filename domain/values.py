"""Validation and normalisation of the values that commands carry.

PostgreSQL's jsonb rejects some values that Python accepts. The ledger treats
them the same way on every path:
- a NUL character or a lone UTF-16 surrogate in any string (text field, JSON
  key or JSON string) is replaced by U+FFFD, the Unicode replacement character;
- NaN and the infinities are rejected, because JSON has no such numbers;
- JSON nested deeper than MAX_JSON_DEPTH is rejected;
- integers are kept exactly (jsonb stores them as numeric) up to
  MAX_INTEGER_DIGITS digits, because Python converts longer ones to text only
  after sys.set_int_max_str_digits() is raised.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.errors import InvalidInputError

MAX_ID_LENGTH = 200
MAX_TEXT_BYTES = 1024 * 1024
MAX_EVENT_BYTES = 2 * 1024 * 1024
MAX_JSON_DEPTH = 64
# Below Python's default limit of 4300 digits for int <-> str conversion.
MAX_INTEGER_DIGITS = 4000
REPLACEMENT_CHARACTER = "\ufffd"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_INTEGER_BOUND = 10**MAX_INTEGER_DIGITS


def clean_text(value: str) -> str:
    """Replace characters that jsonb cannot store with U+FFFD."""
    if _UNSTORABLE.search(value) is None:
        return value
    return _UNSTORABLE.sub(REPLACEMENT_CHARACTER, value)


def require_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
    value = clean_text(value.strip())
    if not value:
        raise InvalidInputError(f"{name} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInputError(
            f"{name} is {len(value)} characters long; the maximum is {MAX_ID_LENGTH}"
        )
    return value


def optional_id(name: str, value: object) -> str | None:
    return None if value is None else require_id(name, value)


def require_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
    cleaned = clean_text(value)
    # Measured after the replacement: U+FFFD takes 3 bytes where NUL took 1.
    size = len(cleaned.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise InvalidInputError(
            f"{name} is {size} bytes long; the maximum is {MAX_TEXT_BYTES} bytes"
        )
    return cleaned


def optional_text(name: str, value: object) -> str | None:
    return None if value is None else require_text(name, value)


def parse_task_id(value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value.strip())
        except ValueError:
            pass
    raise InvalidInputError(f"task id {value!r} is not a UUID")


def require_aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInputError(
            f"{name} must be a datetime, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{name} {value.isoformat()} has no time zone; give an aware datetime"
        )
    return value


def clean_json(name: str, value: object, depth: int = 0) -> Any:
    """Return a copy of a JSON value that jsonb accepts, or raise InvalidInputError."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(f"{name} is nested deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= _INTEGER_BOUND:
            raise InvalidInputError(
                f"{name} contains an integer of more than {MAX_INTEGER_DIGITS} digits"
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(
                f"{name} contains {value!r}, which JSON cannot represent"
            )
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{name} has a key {key!r} that is not a string"
                )
            cleaned_key = clean_text(key)
            if cleaned_key in cleaned:
                raise InvalidInputError(
                    f"{name} has keys that become the same key {cleaned_key!r} "
                    "once NUL characters and lone surrogates are replaced by U+FFFD"
                )
            cleaned[cleaned_key] = clean_json(name, item, depth + 1)
        return cleaned
    if isinstance(value, list | tuple):
        return [clean_json(name, item, depth + 1) for item in value]
    raise InvalidInputError(
        f"{name} contains a {type(value).__name__}, which is not a JSON value"
    )


def clean_metadata(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"metadata must be a JSON object, got {type(value).__name__}"
        )
    cleaned: dict[str, Any] = clean_json("metadata", value)
    return cleaned


def check_event_size(fields: dict[str, Any]) -> None:
    size = len(json.dumps(fields, ensure_ascii=False, default=str).encode())
    if size > MAX_EVENT_BYTES:
        raise InvalidInputError(
            f"the event's payload is {size} bytes; the maximum is "
            f"{MAX_EVENT_BYTES} bytes"
        )
