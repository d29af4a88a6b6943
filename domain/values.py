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
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.errors import InvalidInputError

MAX_ID_LENGTH = 200
# Metadata merges into the task with each command, so its total is bounded too.
MAX_METADATA_BYTES = 2 * 1024 * 1024
# Times outside this range are rejected: they are almost always mistakes, and
# bounding them keeps durations and the statistics' sums far from overflow.
EARLIEST_TIME = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)
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
    value = value.strip()
    # Checked before cleaning, which keeps the length, so that a huge value is
    # rejected without being scanned.
    if len(value) > MAX_ID_LENGTH:
        raise InvalidInputError(
            f"{name} is {len(value)} characters long; the maximum is {MAX_ID_LENGTH}"
        )
    value = clean_text(value)
    if not value:
        raise InvalidInputError(f"{name} must not be empty")
    return value


def optional_id(name: str, value: object) -> str | None:
    return None if value is None else require_id(name, value)


def require_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, got {type(value).__name__}")
    # Every character takes at least one byte and the replacement never shortens
    # one, so a longer string is rejected without being scanned.
    if len(value) > MAX_TEXT_BYTES:
        raise InvalidInputError(
            f"{name} is {len(value)} characters long, more than the maximum of "
            f"{MAX_TEXT_BYTES} bytes"
        )
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
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise InvalidInputError(f"task id {shown} is not a UUID")


def require_aware(name: str, value: object, *, end: bool = False) -> datetime:
    """Return an aware datetime in UTC, or raise InvalidInputError.

    With end, the value is an exclusive end, so it may be the end of the
    supported range itself.
    """
    if not isinstance(value, datetime):
        raise InvalidInputError(
            f"{name} must be a datetime, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{name} {value.isoformat()} has no time zone; give an aware datetime"
        )
    check_time_range(name, value, end=end)
    # UTC keeps offsets with seconds (historical local times) exact in JSON.
    return value.astimezone(UTC)


def check_time_range(name: str, value: datetime, *, end: bool = False) -> datetime:
    """Return an aware time unchanged, or raise if it lies outside 1900 to 2200.

    With end, 2200-01-01 itself is accepted, as the end of a half-open window.
    Comparing 0001-01-01T00:30+01:00 with another time raises OverflowError,
    because its UTC form falls in year 0. That time is outside the range too.
    """
    try:
        within = value >= EARLIEST_TIME and (
            value <= LATEST_TIME if end else value < LATEST_TIME
        )
    except OverflowError:
        within = False
    if not within:
        raise InvalidInputError(
            f"{name} {value.isoformat()} is outside the supported range "
            f"{EARLIEST_TIME.isoformat()} to {LATEST_TIME.isoformat()}"
        )
    return value


def clean_json(name: str, value: object) -> Any:
    """Return a copy of a JSON value that jsonb accepts, or raise InvalidInputError."""
    return _JsonCleaner(name).clean(value, 0)


class _JsonCleaner:
    """A cleaner of one JSON value that counts a lower bound of its size as JSON.

    The count stops a value much larger than any event's payload after about
    MAX_EVENT_BYTES of it were read, instead of after copying and encoding it all.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.size = 0

    def clean(self, value: object, depth: int) -> Any:
        if depth > MAX_JSON_DEPTH:
            raise InvalidInputError(
                f"{self.name} is nested deeper than {MAX_JSON_DEPTH} levels"
            )
        if value is None or isinstance(value, bool):
            self._count(4)
            return value
        if isinstance(value, int):
            self._count(1)
            if abs(value) >= _INTEGER_BOUND:
                raise InvalidInputError(
                    f"{self.name} contains an integer of more than "
                    f"{MAX_INTEGER_DIGITS} digits"
                )
            return value
        if isinstance(value, float):
            self._count(1)
            if not math.isfinite(value):
                raise InvalidInputError(
                    f"{self.name} contains {value!r}, which JSON cannot represent"
                )
            # jsonb's numeric has no negative zero, so -0.0 would read back as
            # 0.0. Adding 0.0 turns it into 0.0 here, as the ledger keeps it.
            return value + 0.0
        if isinstance(value, str):
            return self._string(value)
        if isinstance(value, dict):
            return self._object(value, depth)
        if isinstance(value, list | tuple):
            self._count(2)
            cleaned_items = []
            for item in value:
                self._count(1)
                cleaned_items.append(self.clean(item, depth + 1))
            return cleaned_items
        raise InvalidInputError(
            f"{self.name} contains a {type(value).__name__}, which is not a JSON value"
        )

    def _object(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        self._count(2)
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"{self.name} has a key {key!r} that is not a string"
                )
            # The separators: a colon, and a comma before the next key.
            self._count(2)
            cleaned_key = self._string(key)
            if cleaned_key in cleaned:
                raise InvalidInputError(
                    f"{self.name} has keys that become the same key "
                    f"{cleaned_key!r} once NUL characters and lone surrogates "
                    "are replaced by U+FFFD"
                )
            cleaned[cleaned_key] = self.clean(item, depth + 1)
        return cleaned

    def _string(self, value: str) -> str:
        # Two quotes, and at least one byte per character.
        self._count(len(value) + 2)
        return clean_text(value)

    def _count(self, size: int) -> None:
        self.size += size
        if self.size > MAX_EVENT_BYTES:
            raise InvalidInputError(
                f"{self.name} is more than {MAX_EVENT_BYTES} bytes as JSON, the "
                "maximum size of an event's payload"
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


def check_merged_metadata(metadata: dict[str, Any]) -> None:
    """Reject a task whose merged metadata would pass MAX_METADATA_BYTES."""
    size = len(json.dumps(metadata, ensure_ascii=False, default=str).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidInputError(
            f"the task's merged metadata would be {size} bytes; the maximum is "
            f"{MAX_METADATA_BYTES} bytes, so send smaller metadata"
        )
