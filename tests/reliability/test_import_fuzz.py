"""Fuzz the import readers: nothing but their documented rejections escapes.

A JSON Lines line becomes a Transition or a Rejected entry. An XES document
yields Transition, Rejected and Ignored entries, or raises XesFormatError when
it is not well-formed. Every Transition carries values that the ledger's own
input rules accept unchanged, so an import never stores what a command could
not.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from xml.sax.saxutils import quoteattr

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.status import TaskStatus
from domain.values import (
    MAX_TEXT_BYTES,
    clean_json,
    clean_metadata,
    optional_id,
    optional_text,
    require_id,
    require_text,
)
from taskledger.importing.jsonl import parse_line, read_jsonl
from taskledger.importing.mapping import XesMapping
from taskledger.importing.records import Ignored, Rejected, Transition, task_uuid
from taskledger.importing.sources import ImportFileError
from taskledger.importing.xes import XesFormatError, read_xes

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Arbitrary bytes are cheap to read, so they get more examples.
FUZZ_BYTES = settings(FUZZ, max_examples=1000)
LONG_TEXT = "x" * (MAX_TEXT_BYTES + 1)
AWKWARD_TEXTS = [
    "",
    " ",
    "\x00",
    "\ud800",
    "'; drop table task_events; --",
    "é" * 300,
    LONG_TEXT,
]
TIMESTAMPS = [
    "2024-05-01T10:00:00+02:00",
    "2024-05-01T10:00:00Z",
    "2024-05-01T10:00:00",
    "2024-05-01",
    "2024-13-01T00:00:00+00:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "2024-05-01T10:00:00+25:00",
    "now",
    "",
]
OFFSETS = [
    UTC,
    timezone(timedelta(hours=-14)),
    timezone(timedelta(hours=5, minutes=45)),
]


def check_transition(entry: Transition) -> None:
    """Assert that a Transition's values pass the ledger's input rules unchanged."""
    assert isinstance(entry.status, TaskStatus)
    assert entry.occurred_at.utcoffset() is not None
    assert require_id("task_id", entry.external_id) == entry.external_id
    assert entry.task_id == task_uuid(entry.external_id)
    creation = entry.creation
    for name in ("agent_id", "agent_name", "task_type"):
        assert require_id(name, creation[name]) == creation[name]
    assert optional_id("user_id", creation["user_id"]) == creation["user_id"]
    assert require_text("message", creation["message"]) == creation["message"]
    assert optional_text("response", entry.response) == entry.response
    assert optional_text("error_message", entry.error_message) == entry.error_message
    assert clean_json("response_data", entry.response_data) == entry.response_data
    assert clean_metadata(entry.metadata) == entry.metadata


# JSON Lines

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(AWKWARD_TEXTS + TIMESTAMPS),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
LINE_FIELDS = [
    "task_id",
    "status",
    "occurred_at",
    "agent_id",
    "agent_name",
    "task_type",
    "user_id",
    "message",
    "response",
    "response_data",
    "error_message",
    "metadata",
]
FIELD_NAMES = st.sampled_from([*LINE_FIELDS, "extra", "", "task_id "])
VALID_LINE: dict[str, Any] = {
    "task_id": "order-17",
    "status": "completed",
    "occurred_at": "2024-05-01T10:00:09+02:00",
    "agent_id": "sales",
    "agent_name": "Sales",
    "task_type": "chat",
    "user_id": "u-1",
    "message": "Quote 3 seats",
    "response": "Sent",
    "response_data": {"price": 420},
    "error_message": None,
    "metadata": {"tokens": 812},
}
# Raw JSON text that json.dumps cannot produce: numbers beyond float and int
# conversion limits, lone surrogate escapes, NUL escapes, duplicate keys.
RAW_VALUES = [
    "1" * 5000,
    "1e400",
    "-0.0e-400",
    '"\\ud800"',
    '"\\u0000"',
    '{"a": 1, "a": 2}',
    "[" * 300 + "]" * 300,
    "NaN",
    "Infinity",
]


@st.composite
def near_valid_lines(draw: st.DrawFn) -> bytes:
    record = dict(VALID_LINE)
    record["status"] = draw(st.sampled_from([s.value for s in TaskStatus]))
    record["occurred_at"] = draw(
        st.sampled_from(TIMESTAMPS)
        | st.datetimes(timezones=st.sampled_from(OFFSETS)).map(datetime.isoformat)
    )
    for _ in range(draw(st.integers(0, 4))):
        name = draw(FIELD_NAMES)
        if draw(st.booleans()):
            record.pop(name, None)
        else:
            record[name] = draw(JSON_VALUES)
    text = json.dumps(record, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        raw = draw(st.sampled_from(RAW_VALUES))
        field = draw(st.sampled_from(LINE_FIELDS))
        text = text.replace("{", f'{{"{field}": {raw}, ', 1)
    data = text.encode("utf-8", "surrogatepass")
    if data and draw(st.booleans()):
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut] + draw(st.binary(max_size=3)) + data[cut + 1 :]
    return data


def check_jsonl_entry(entry: object) -> None:
    assert isinstance(entry, Transition | Rejected), entry
    if isinstance(entry, Transition):
        check_transition(entry)
    else:
        assert entry.reason


@FUZZ_BYTES
@given(st.binary(max_size=400))
def test_jsonl_arbitrary_bytes_are_rejected_or_read(data: bytes) -> None:
    # Input whose first line is not UTF-8 text, or is XML, is refused whole.
    refused: ImportFileError | None = None
    try:
        for entry in read_jsonl(io.BytesIO(data)):
            check_jsonl_entry(entry)
    except ImportFileError as error:
        refused = error
    if refused is not None:
        assert "is not JSON Lines" in str(refused)


@FUZZ
@given(near_valid_lines())
def test_jsonl_near_valid_lines_are_rejected_or_read(line: bytes) -> None:
    check_jsonl_entry(parse_line(line, 1))


# XES

XES_MAPPING = XesMapping.model_validate(
    {
        "after_terminal": "retry",
        "fields": {
            "agent_id": {"event": "org:group"},
            "agent_name": {"event": "org:resource", "default": "nobody"},
            "task_type": {"trace": "kind"},
            "user_id": {"trace": "user"},
            "message": {"event": "note"},
            "error_message": {"event": "reason"},
        },
        "metadata": ["concept:name", "lifecycle:transition", "note"],
        "status": [
            {"name": "Queued", "status": "pending"},
            {"name": "Accepted", "lifecycle": "Wait*", "status": "waiting"},
            {"name": "Accepted", "status": "processing"},
            {"name": "Completed", "status": "completed"},
            {"name": "Failed", "status": "failed"},
            {"name": "Note*", "status": "ignore"},
        ],
    }
)
XES_KEYS = [
    "concept:name",
    "lifecycle:transition",
    "time:timestamp",
    "org:group",
    "org:resource",
    "note",
    "kind",
    "user",
    "reason",
]
TRACE_KEYS = ["concept:name", "kind", "user"]
EVENT_KEYS = [
    "concept:name",
    "lifecycle:transition",
    "time:timestamp",
    "org:group",
    "reason",
]
# Mostly text that XML can carry; NUL and lone surrogates make the document
# malformed.
STATUS_NAMES = ["Queued", "Accepted", "Completed", "Failed", "Note"]
XES_TEXT = (
    st.sampled_from([*STATUS_NAMES, "Wait"])
    | st.sampled_from([" t1", "t1 ", "\u00e9" * 300, "x' or '1'='1"])
    | st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=12)
    | st.sampled_from([t for t in AWKWARD_TEXTS if t != LONG_TEXT] + TIMESTAMPS)
)
# Mostly "string", the tag of most attributes in real logs.
ATTRIBUTE_TAGS = st.sampled_from(["string"] * 4 + ["date", "int", "id", "boolean", "x"])
DECLARATIONS = [
    *[""] * 4,
    *['<?xml version="1.0" encoding="UTF-8"?>'] * 4,
    '<?xml version="1.0" encoding="latin-1"?>',
    '<?xml version="1.0" encoding="utf-16"?>',
    '<?xml version="1.0" encoding="utf-32"?>',
    '<?xml version="1.0" encoding="x-unknown"?>',
    '<?xml version="1.0"?><!DOCTYPE log [<!ENTITY e "expanded">]>',
]


def xes_attribute(tag: str, key: str, value: str, nested: str = "") -> str:
    return f"<{tag} key={quoteattr(key)} value={quoteattr(value)}>{nested}</{tag}>"


@st.composite
def xes_value(draw: st.DrawFn, key: str) -> str:
    if key == "time:timestamp":
        return draw(
            st.sampled_from(TIMESTAMPS)
            | st.datetimes(timezones=st.sampled_from(OFFSETS)).map(datetime.isoformat)
        )
    # Names that the mapping's rules match, and texts over the size limit, are
    # frequent enough that many events become transitions and some of those are
    # too large.
    if key == "concept:name" and draw(st.integers(0, 3)) > 0:
        return draw(st.sampled_from(STATUS_NAMES))
    if key == "reason" and draw(st.integers(0, 7)) == 0:
        return LONG_TEXT
    return draw(XES_TEXT)


@st.composite
def xes_attributes(draw: st.DrawFn, usual: list[str]) -> str:
    """Most of the usual attributes, then a few random ones."""
    keys = [key for key in usual if draw(st.integers(0, 9)) > 0]
    keys += draw(st.lists(st.sampled_from(XES_KEYS), max_size=3))
    parts = []
    for key in keys:
        tag = "date" if key == "time:timestamp" else draw(ATTRIBUTE_TAGS)
        nested = xes_attribute("string", "inner", "x") if draw(st.booleans()) else ""
        parts.append(xes_attribute(tag, key, draw(xes_value(key)), nested))
    return "".join(parts)


@st.composite
def near_valid_documents(draw: st.DrawFn) -> bytes:
    traces = []
    for _ in range(draw(st.integers(0, 3))):
        events = [
            f"<event>{draw(xes_attributes(EVENT_KEYS))}</event>"
            for _ in range(draw(st.integers(0, 4)))
        ]
        trace = draw(xes_attributes(TRACE_KEYS))
        traces.append(f"<trace>{trace}{''.join(events)}</trace>")
    declaration = draw(st.sampled_from(DECLARATIONS))
    body = f'{declaration}<log xes.version="1.0">{"".join(traces)}</log>'
    data = body.encode("utf-8", "surrogatepass")
    if data and draw(st.integers(0, 3)) == 0:
        cut = draw(st.integers(0, len(data) - 1))
        data = data[:cut] + draw(st.binary(max_size=3)) + data[cut + 1 :]
    return data


def read_all_xes(data: bytes) -> None:
    try:
        entries = list(read_xes(io.BytesIO(data), XES_MAPPING))
    except XesFormatError:
        return
    for entry in entries:
        assert isinstance(entry, Transition | Rejected | Ignored), entry
        if isinstance(entry, Transition):
            check_transition(entry)


@FUZZ_BYTES
@given(st.binary(max_size=400))
def test_xes_arbitrary_bytes_are_rejected_or_read(data: bytes) -> None:
    read_all_xes(data)


@FUZZ
@given(near_valid_documents())
def test_xes_near_valid_documents_are_rejected_or_read(data: bytes) -> None:
    read_all_xes(data)
