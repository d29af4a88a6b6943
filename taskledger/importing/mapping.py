"""The TOML mapping that fits an XES event log to task transitions.

Example:

    task_id = "concept:name"          # trace attribute with the task id
    after_terminal = "retry"          # reject | retry | ignore
    collapse_repeats = true

    [fields]
    agent_id = { event = "org:group" }
    agent_name = { event = "org:resource" }
    task_type = { trace = "product", default = "incident" }

    [[status]]
    name = "Queued"                   # glob on concept:name
    lifecycle = "Awaiting*"           # glob on lifecycle:transition
    status = "pending"                # a task status, or "ignore"
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.status import TaskStatus
from taskledger.importing.records import AfterTerminal, ReadRules

NAME_KEY = "concept:name"
LIFECYCLE_KEY = "lifecycle:transition"
TIME_KEY = "time:timestamp"
IGNORE = "ignore"


class MappingError(Exception):
    """The mapping file is missing, not TOML, or does not describe a mapping."""


class AttributeSource(BaseModel):
    """Where one task field comes from: a trace or event attribute, or a value."""

    model_config = ConfigDict(extra="forbid")

    trace: str | None = None
    event: str | None = None
    value: str | None = None
    default: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AttributeSource:
        given = [name for name in ("trace", "event", "value") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of trace, event or value")
        return self

    def resolve(
        self, trace: dict[str, str], event: dict[str, str], fallback: str | None
    ) -> str | None:
        if self.value is not None:
            return self.value
        found = trace.get(self.trace) if self.trace else event.get(self.event or "")
        return found if found is not None else (self.default or fallback)


class FieldSources(BaseModel):
    """The task fields the mapping fills; a field left out gets its default."""

    model_config = ConfigDict(extra="forbid")

    agent_id: AttributeSource | None = None
    agent_name: AttributeSource | None = None
    task_type: AttributeSource | None = None
    user_id: AttributeSource | None = None
    message: AttributeSource | None = None
    error_message: AttributeSource | None = None


class StatusRule(BaseModel):
    """Events whose concept:name and lifecycle:transition match these globs
    (an omitted glob matches anything) become this status, or are ignored."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    lifecycle: str | None = None
    status: TaskStatus | Literal["ignore"]

    @model_validator(mode="after")
    def _matches_something(self) -> StatusRule:
        if self.name is None and self.lifecycle is None:
            raise ValueError("give name, lifecycle or both")
        return self

    def matches(self, name: str | None, lifecycle: str | None) -> bool:
        return _glob(self.name, name) and _glob(self.lifecycle, lifecycle)


class XesMapping(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid")

    task_id: str = NAME_KEY
    after_terminal: AfterTerminal = AfterTerminal.REJECT
    collapse_repeats: bool = True
    metadata: list[str] = Field(default_factory=lambda: [NAME_KEY, LIFECYCLE_KEY])
    fields: FieldSources = Field(default_factory=FieldSources)
    status: list[StatusRule] = Field(min_length=1)

    @property
    def rules(self) -> ReadRules:
        return ReadRules(
            collapse_repeats=self.collapse_repeats, after_terminal=self.after_terminal
        )

    def status_of(
        self, name: str | None, lifecycle: str | None
    ) -> TaskStatus | Literal["ignore"] | None:
        """Return the first matching rule's status, or None if none matches."""
        for rule in self.status:
            if rule.matches(name, lifecycle):
                return rule.status
        return None


def load_mapping(path: Path) -> XesMapping:
    """Read and validate a mapping file, or raise MappingError."""
    try:
        document = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise MappingError(f"mapping file {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise MappingError(f"mapping file {path} cannot be read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise MappingError(f"mapping file {path} is not valid TOML: {error}") from None
    try:
        return XesMapping.model_validate(document)
    except ValidationError as error:
        raise MappingError(
            f"mapping file {path} is invalid: {_describe(error)}"
        ) from None


def _describe(error: ValidationError) -> str:
    """Return the first problem of a mapping, naming keys as the TOML file does.

    An unknown key comes first, because a misspelt key also leaves the key it
    meant missing.
    """
    errors = error.errors(include_url=False)
    unknown = [item for item in errors if item["type"] == "extra_forbidden"]
    first = (unknown or errors)[0]
    where = _location(first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{where} is not a known key"
    if first["type"] == "missing":
        return f"{where} is missing"
    if first["type"] in ("enum", "literal_error"):
        allowed = ", ".join([status.value for status in TaskStatus] + [IGNORE])
        return f"{where} is {first['input']!r}, not one of: {allowed}"
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


def _location(loc: tuple[int | str, ...]) -> str:
    """Write a pydantic error location as the keys and [[table]] numbers of TOML.

    Parts with brackets name the member of a union that pydantic tried, not a
    key, and are left out.
    """
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int) and parts:
            parts[-1] = f"[[{parts[-1].removeprefix('key ')}]] number {part + 1}"
        elif isinstance(part, str) and "[" not in part:
            if parts and parts[-1].startswith("key "):
                parts[-1] += f".{part}"
            else:
                parts.append(f"key {part}")
    return ", ".join(parts) or "the file"


def _glob(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    return value is not None and fnmatchcase(value, pattern)
