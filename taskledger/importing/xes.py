"""Read XES event logs (IEEE 1849), streamed: each trace is one task.

Only a trace's own attributes and the attributes of its events are read (nested
attributes are skipped), and each trace is released once it has been read, so
memory follows the largest trace, not the file.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from datetime import datetime
from typing import IO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from domain.errors import InvalidInputError
from domain.status import TaskStatus
from domain.values import (
    check_time_range,
    clean_metadata,
    optional_id,
    optional_text,
    require_id,
    require_text,
)
from taskledger.importing.mapping import (
    IGNORE,
    LIFECYCLE_KEY,
    NAME_KEY,
    TIME_KEY,
    AttributeSource,
    XesMapping,
)
from taskledger.importing.records import (
    DEFAULT_ID,
    Entry,
    Ignored,
    Rejected,
    Transition,
    task_uuid,
)

_ATTRIBUTE_TAGS = frozenset(
    {"string", "date", "int", "float", "boolean", "id", "list", "container"}
)


class XesFormatError(Exception):
    """The file cannot be read as XML. The message names the file and the reason."""


def read_xes(
    stream: IO[bytes], mapping: XesMapping, name: str = "the file"
) -> Generator[Entry]:
    """Yield one entry per event of every trace, in document order.

    name is the file's name for error messages.
    """
    reader = _TraceReader(mapping)
    try:
        for kind, element in iterparse(stream, events=("start", "end")):
            if kind == "start":
                reader.opened(element)
            else:
                yield from reader.closed(element)
    except ParseError as error:
        raise XesFormatError(_parse_error_message(name, error, reader)) from None
    except DefusedXmlException as error:
        raise XesFormatError(f"{name} was rejected as unsafe: {error}") from None
    except (LookupError, ValueError) as error:
        # expat raises these for an unknown or multi-byte encoding in the XML
        # declaration (utf-32, for example).
        raise XesFormatError(
            f"{name} cannot be decoded: {error}; save it as UTF-8"
        ) from None


def _parse_error_message(name: str, error: ParseError, reader: _TraceReader) -> str:
    if reader.root is None:
        # Not one element was read, so the file is most likely not XML at all,
        # for example a CSV file or JSON Lines named .xes.
        return (
            f"{name} is not an XES log: no XML element could be read ({error}); "
            "if it is JSON Lines or an Alibaba pod list, import it with "
            "--format jsonl or --format alibaba"
        )
    return f"{name} is not well-formed XML: {error}; repair or export it again"


class _TraceReader:
    def __init__(self, mapping: XesMapping) -> None:
        self.mapping = mapping
        self.depth = 0
        self.root: Element | None = None
        self.event_number = 0
        self.trace_number = 0

    def opened(self, element: Element) -> None:
        if self.root is None:
            self.root = element
        self.depth += 1

    def closed(self, element: Element) -> Iterator[Entry]:
        self.depth -= 1
        # Depth 1 contains the log's children: traces, and log-level elements that
        # are no use here; both are dropped once read.
        if self.depth != 1:
            return
        if _local(element.tag) == "trace":
            self.trace_number += 1
            yield from self._trace_entries(element)
        assert self.root is not None
        self.root.clear()

    def _trace_entries(self, trace: Element) -> Iterator[Entry]:
        trace_attributes = _attributes(trace)
        external_id = trace_attributes.get(self.mapping.task_id)
        for event in trace:
            if _local(event.tag) != "event":
                continue
            self.event_number += 1
            where = f"event {self.event_number} (trace {self.trace_number}"
            where += f" {external_id!r})" if external_id else ")"
            if not external_id:
                yield Rejected(
                    self.event_number,
                    where,
                    f"the trace has no {self.mapping.task_id} attribute",
                )
                continue
            yield self._entry(external_id, trace_attributes, _attributes(event), where)

    def _entry(
        self,
        external_id: str,
        trace: dict[str, str],
        event: dict[str, str],
        where: str,
    ) -> Entry:
        number = self.event_number
        name, lifecycle = event.get(NAME_KEY), event.get(LIFECYCLE_KEY)
        status = self.mapping.status_of(name, lifecycle)
        if status is None:
            return Rejected(
                number,
                where,
                f"{NAME_KEY} {name!r} with {LIFECYCLE_KEY} {lifecycle!r} is not "
                "covered by the mapping",
            )
        if status == IGNORE or not isinstance(status, TaskStatus):
            return Ignored(number, where, "mapped to ignore")
        try:
            occurred_at = _timestamp(event.get(TIME_KEY))
            fields = self.mapping.fields

            def field(name: str, fallback: str | None) -> str | None:
                source: AttributeSource | None = getattr(fields, name)
                if source is None:
                    return fallback
                return source.resolve(trace, event, fallback)

            creation = {
                "agent_id": require_id("agent_id", field("agent_id", DEFAULT_ID)),
                "agent_name": require_id("agent_name", field("agent_name", DEFAULT_ID)),
                "task_type": require_id("task_type", field("task_type", DEFAULT_ID)),
                "user_id": optional_id("user_id", field("user_id", None)),
                "message": require_text("message", field("message", "") or ""),
            }
            metadata = clean_metadata(
                {key: event[key] for key in self.mapping.metadata if key in event}
            )
            # Trimmed as in JSON Lines, so an id gives one task uuid in both formats.
            identifier = require_id("task id", external_id)
            return Transition(
                line=number,
                where=where,
                external_id=identifier,
                task_id=task_uuid(identifier),
                status=status,
                occurred_at=occurred_at,
                creation=creation,
                error_message=optional_text(
                    "error_message", field("error_message", None)
                ),
                metadata=metadata,
            )
        except InvalidInputError as error:
            return Rejected(number, where, str(error))


def _attributes(element: Element) -> dict[str, str]:
    """Return the element's own attributes (key to value), not nested ones."""
    found: dict[str, str] = {}
    for child in element:
        if _local(child.tag) in _ATTRIBUTE_TAGS:
            key, value = child.get("key"), child.get("value")
            if key is not None and value is not None:
                found[key] = value
    return found


def _timestamp(value: str | None) -> datetime:
    if value is None:
        raise InvalidInputError(f"the event has no {TIME_KEY} attribute")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            f"{TIME_KEY} {value!r} is not an ISO 8601 date and time"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInputError(f"{TIME_KEY} {value!r} has no UTC offset")
    return check_time_range(TIME_KEY, parsed)


def _local(tag: str) -> str:
    """Return a tag without its XML namespace."""
    return tag.rsplit("}", 1)[-1]
