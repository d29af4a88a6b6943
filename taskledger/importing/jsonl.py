"""Read JSON Lines task histories: one transition per line."""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from datetime import datetime
from typing import IO, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from domain.errors import InvalidInputError
from domain.status import TaskStatus
from domain.values import (
    check_time_range,
    clean_json,
    clean_metadata,
    optional_id,
    optional_text,
    require_id,
    require_text,
)
from taskledger.importing.records import (
    DEFAULT_ID,
    Entry,
    ReadRules,
    Rejected,
    Transition,
    task_uuid,
)
from taskledger.importing.sources import ImportFileError

# A transition that the state machine rejects is rejected, as through the API.
JSONL_RULES = ReadRules()


class TransitionLine(BaseModel):
    """One line of a JSON Lines history."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    # A whole number is read as its digits. Other numbers are rejected,
    # because 100, 1e2 and 100.0 would all be task "100", and 1e400 "inf".
    task_id: StrictStr | StrictInt
    status: TaskStatus
    occurred_at: AwareDatetime
    agent_id: str | None = None
    agent_name: str | None = None
    task_type: str | None = None
    user_id: str | None = None
    message: str | None = None
    response: str | None = None
    response_data: Any = None
    error_message: str | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _offset_with_seconds(cls, value: Any) -> Any:
        """Parse an offset with seconds (+00:19:32), which pydantic rejects."""
        if isinstance(value, str) and _OFFSET_WITH_SECONDS.search(value):
            try:
                return datetime.fromisoformat(value)
            except ValueError:
                return value
        return value


# Local mean times before time zones were standardised have offsets in seconds.
_OFFSET_WITH_SECONDS = re.compile(r"[+-]\d\d:\d\d:\d\d(\.\d+)?$")


def read_jsonl(stream: IO[bytes], name: str = "the file") -> Generator[Entry]:
    """Yield one entry per non-blank line of a binary stream.

    Raises ImportFileError if the first non-blank line shows that the stream
    is binary data or XML, so that a file of another format is not read as
    thousands of invalid lines. name is the file's name for that message.
    """
    checked = False
    for number, raw in enumerate(stream, start=1):
        # A UTF-8 byte order mark may open the file.
        content = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
        if not content.strip():
            continue
        if not checked:
            _check_first_line(content, name)
            checked = True
        yield parse_line(content, number)


def _check_first_line(content: bytes, name: str) -> None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{name} is not JSON Lines: its first line is not UTF-8 text, so it "
            "looks like binary data; decompress it if it is an archive, or give "
            "the right --format (xes or alibaba)"
        ) from None
    if text.lstrip().startswith("<"):
        raise ImportFileError(
            f"{name} is not JSON Lines: it starts with XML, like an XES log; "
            "import it with --format xes and --mapping FILE.toml"
        )


def parse_line(raw: bytes, number: int) -> Entry:
    where = f"line {number}"
    try:
        line = _validate(raw)
        _check_fields_once(raw)
        return _transition(line, number, where)
    except ValidationError as error:
        return Rejected(number, where, describe_validation_error(error))
    except InvalidInputError as error:
        return Rejected(number, where, str(error))


def _validate(raw: bytes) -> TransitionLine:
    """Validate one line, also when its strings hold lone surrogate escapes.

    pydantic's JSON parser rejects an escape such as \\ud800 that is not half
    of a pair, and Python's accepts it, so such a line is read with Python's.
    The cleaners then replace the lone surrogate with U+FFFD, as in the other
    formats.
    """
    try:
        return TransitionLine.model_validate_json(raw)
    except ValidationError as error:
        if error.errors()[0]["type"] != "json_invalid" or b"\\u" not in raw:
            raise
        try:
            document = json.loads(raw, parse_constant=_reject_constant)
        except ValueError:
            raise error from None
        return TransitionLine.model_validate(document)


def _check_fields_once(raw: bytes) -> None:
    """Raise InvalidInputError if a field of the line is given twice.

    JSON parsers keep the last of two equal keys, so a line with two statuses
    would import one of them silently. Only a line that names a field twice
    anywhere is parsed again, to look at its top-level keys.
    """
    if not any(raw.count(quoted) > 1 for quoted in _QUOTED_FIELDS):
        return
    try:
        keys = json.loads(raw, object_pairs_hook=lambda pairs: [k for k, _ in pairs])
    except ValueError:
        return
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InvalidInputError(
            f"field {repeated[0]} is given more than once; keep one of them"
        )


_QUOTED_FIELDS = [f'"{name}"'.encode() for name in TransitionLine.model_fields]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _transition(line: TransitionLine, number: int, where: str) -> Transition:
    external_id = require_id("task_id", str(line.task_id))
    # Only a missing field gets the default. An explicit "" is invalid, as it
    # is through the Python API.
    creation = {
        "agent_id": require_id("agent_id", _or_default(line.agent_id)),
        "agent_name": require_id("agent_name", _or_default(line.agent_name)),
        "task_type": require_id("task_type", _or_default(line.task_type)),
        "user_id": optional_id("user_id", line.user_id),
        "message": require_text("message", line.message or ""),
    }
    return Transition(
        line=number,
        where=where,
        external_id=external_id,
        task_id=task_uuid(external_id),
        status=line.status,
        occurred_at=check_time_range("occurred_at", line.occurred_at),
        creation=creation,
        response=optional_text("response", line.response),
        response_data=clean_json("response_data", line.response_data),
        error_message=optional_text("error_message", line.error_message),
        metadata=clean_metadata(line.metadata),
    )


def _or_default(value: str | None) -> str:
    return DEFAULT_ID if value is None else value


def _describe_invalid_json(first: ErrorDetails) -> str:
    detail = str(first["ctx"].get("error", first["msg"]))
    # The parser counts lines within the one line it was given, so its
    # "line 1 column N" is column N of the file's line, and "line 2" means
    # the JSON ended at the line break.
    detail = re.sub(r" at line 1 column (\d+)$", r" at column \1", detail)
    detail = re.sub(r" at line 2 column \d+$", " at the end of the line", detail)
    return f"invalid JSON: {detail}"


def describe_validation_error(error: ValidationError) -> str:
    """Return the first problem pydantic found, as one sentence.

    An unknown field comes first, because a misspelt field also leaves the
    field it meant missing.
    """
    errors = error.errors(include_url=False)
    unknown = [item for item in errors if item["type"] == "extra_forbidden"]
    first = (unknown or errors)[0]
    if first["type"] == "json_invalid":
        return _describe_invalid_json(first)
    if not first["loc"]:
        return f"the line is not a JSON object: {first['msg']}"
    field_name = ".".join(str(part) for part in first["loc"])
    if first["type"] in _FIELD_PROBLEMS:
        return f"field {field_name} {_FIELD_PROBLEMS[first['type']]}"
    if first["loc"][0] == "task_id":
        return "field task_id is invalid: give a string or a whole number"
    if first["type"] == "enum":
        allowed = ", ".join(status.value for status in TaskStatus)
        return f"status {first['input']!r} is not one of: {allowed}"
    return f"field {field_name} is invalid: {first['msg']}"


_FIELD_PROBLEMS = {"missing": "is missing", "extra_forbidden": "is not a known field"}
