"""PydanticMapper: its JSON is the text PostgreSQL prints for the jsonb value."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.task import Task
from infrastructure.mapper import JsonStoredEvent, PydanticMapper, jsonb_text

# Characters jsonb stores: no NUL and no lone surrogates.
storable_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(storable_text, children, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def plain_db(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=json_values)
def test_jsonb_text_matches_postgres(
    plain_db: psycopg.Connection[tuple[Any, ...]], value: Any
) -> None:
    text = jsonb_text(value)

    row = plain_db.execute("select %s::jsonb::text", (text,)).fetchone()

    assert row == (text,)
    assert same_json(json.loads(text), value)


def same_json(loaded: Any, value: Any) -> bool:
    """Compare as JSON, with floats and integers apart (1.0 is not 1)."""
    if type(loaded) is not type(value):
        return False
    if isinstance(value, dict):
        return loaded.keys() == value.keys() and all(
            same_json(loaded[key], value[key]) for key in value
        )
    if isinstance(value, list):
        return len(loaded) == len(value) and all(
            same_json(a, b) for a, b in zip(loaded, value, strict=True)
        )
    return bool(loaded == value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e-07, "0.0000001"),
        (1e16, "10000000000000000.0"),
        (4.999204053584994e16, "49992040535849940.0"),
        (1.5e300, "15" + "0" * 299 + ".0"),
        (-0.0, "0.0"),
        (2**64, "18446744073709551616"),
        ({"bb": 1, "a": 2, "é": 3}, '{"a": 2, "bb": 1, "é": 3}'),
        (["\x1f", "\x7f", "/"], '["\\u001f", "\x7f", "/"]'),
    ],
)
def test_jsonb_text_known_forms(value: Any, expected: str) -> None:
    assert jsonb_text(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, "\ud800", {1: 2}, object()])
def test_jsonb_text_rejects_non_json(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        jsonb_text(value)


def test_mapper_round_trips_task_event() -> None:
    mapper = PydanticMapper()
    task = Task.create(
        agent_id="a",
        agent_name="A",
        message="m",
        task_type="chat",
        user_id="u",
        metadata={"tokens": 2**60, "ratio": 0.25, "nested": {"k": [1, None]}},
        timestamp=datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    )
    [created] = task.collect_events()

    stored = mapper.to_stored_event(created)
    decoded = mapper.to_domain_event(stored)

    assert decoded == created
    assert stored.state.decode() == jsonb_text(json.loads(stored.state))
    assert b"originator_id" not in stored.state


def test_nul_escape_text_takes_checked_path() -> None:
    mapper = PydanticMapper()
    # Text of a backslash then "u0000", which looks like the NUL escape in JSON.
    fields = {"agent_id": "a", "agent_name": "A", "message": "m", "task_type": "t"}
    [plain] = Task.create(**fields, metadata={"k": "\\u0000"}).collect_events()
    [other] = Task.create(**fields, metadata={"k": "u0000"}).collect_events()

    assert not isinstance(mapper.to_stored_event(plain), JsonStoredEvent)
    assert isinstance(mapper.to_stored_event(other), JsonStoredEvent)


def test_mapper_upcasts_failed_v1() -> None:
    mapper = PydanticMapper()
    task = Task.create(agent_id="a", agent_name="A", message="m", task_type="chat")
    task.start(metadata={}, timestamp=None)
    task.fail(error_message="boom", metadata={}, timestamp=None)
    failed = mapper.to_stored_event(list(task.collect_events())[-1])
    old_state = json.loads(failed.state)
    old_state["error"] = old_state.pop("error_message")
    del old_state["metadata"], old_state["class_version"]
    old = type(failed)(
        originator_id=uuid4(),
        originator_version=3,
        topic=failed.topic,
        state=json.dumps(old_state).encode(),
    )

    event = mapper.to_domain_event(old)

    assert isinstance(event, Task.Failed)
    assert event.error_message == "boom"
    assert event.metadata == {}
