"""Bad input at the facade: replaced where jsonb cannot store it, rejected otherwise."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
import pytest

from domain.values import MAX_EVENT_BYTES, MAX_ID_LENGTH, MAX_TEXT_BYTES
from taskledger import (
    InvalidInputError,
    InvalidTransitionError,
    TaskLedger,
    TaskRecord,
    TaskStatus,
)

Db = psycopg.Connection[tuple[Any, ...]]
FFFD = "\ufffd"
# Each unstorable character, and what reads back in its place.
UNSTORABLE = ["\x00", "\ud800", "\udfff", "\udbff"]
BIG = 2**53 + 1


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": [value]}
    return value


def created(ledger: TaskLedger) -> TaskRecord:
    task = ledger.create_task("a", "A", "m", "chat")
    return ledger.start_task(task.id)


def replayed(ledger: TaskLedger, task_id: UUID) -> TaskRecord:
    """The task rebuilt from its stored events."""
    return ledger._commands.task_at_version(task_id, 10**6)


def event_count(db: Db) -> int:
    row = db.execute("select count(*) from task_events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_unstorable_characters_read_back_replaced(
    ledger: TaskLedger, db: Db, bad: str
) -> None:
    text = f"x{bad}y"
    clean = f"x{FFFD}y"
    task = ledger.create_task(
        text,
        text,
        text,
        text,
        user_id=text,
        metadata={text: text, "list": [text, {text: [text]}]},
        actor=text,
        correlation_id=text,
        causation_id=text,
        idempotency_key=f"create{text}",
    )
    ledger.start_task(task.id, {"started": text})
    done = ledger.complete_task(task.id, text, {text: [text, {text: text}]})

    expected_metadata = {
        clean: clean,
        "list": [clean, {clean: [clean]}],
        "started": clean,
    }
    for record in (done, ledger.get_task(task.id), replayed(ledger, task.id)):
        assert record.agent_id == clean
        assert record.agent_name == clean
        assert record.message == clean
        assert record.task_type == clean
        assert record.user_id == clean
        assert record.response == clean
        assert record.response_data == {clean: [clean, {clean: clean}]}
        assert record.metadata == expected_metadata
    context = db.execute(
        "select metadata ->> 'actor', metadata ->> 'correlation_id', "
        "metadata ->> 'causation_id', metadata ->> 'idempotency_key' "
        "from task_events where version = 1"
    ).fetchone()
    assert context == (clean, clean, clean, f"create{clean}")


@pytest.mark.parametrize("bad", UNSTORABLE)
def test_unstorable_in_error_and_reason(ledger: TaskLedger, bad: str) -> None:
    failing = created(ledger)
    cancelling = created(ledger)

    failed = ledger.fail_task(failing.id, f"boom{bad}")
    cancelled = ledger.cancel_task(cancelling.id, f"stop{bad}")

    assert failed.error_message == f"boom{FFFD}"
    assert cancelled.error_message == f"stop{FFFD}"
    assert ledger.get_task(failing.id).error_message == f"boom{FFFD}"
    assert replayed(ledger, cancelling.id).error_message == f"stop{FFFD}"


def test_keys_that_collide_after_replacement_are_rejected(ledger: TaskLedger) -> None:
    with pytest.raises(InvalidInputError, match="the same key"):
        ledger.create_task("a", "A", "m", "chat", metadata={"k\x00": 1, "k\ud800": 2})


NON_FINITE = [math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("number", NON_FINITE)
def test_non_finite_numbers_are_rejected(ledger: TaskLedger, number: float) -> None:
    task = created(ledger)
    commands: list[Callable[[], object]] = [
        lambda: ledger.complete_task(task.id, "r", number),
        lambda: ledger.complete_task(task.id, "r", {"x": [1, number]}),
        lambda: ledger.complete_task(task.id, "r", None, {"score": number}),
        lambda: ledger.wait_task(task.id, {"nested": {"score": [number]}}),
        lambda: ledger.create_task("a", "A", "m", "chat", metadata={"n": number}),
    ]

    for command in commands:
        with pytest.raises(InvalidInputError, match="JSON cannot represent"):
            command()

    assert ledger.get_task(task.id).version == 2


def test_negative_zero_is_kept_as_zero(ledger: TaskLedger) -> None:
    task = created(ledger)

    done = ledger.complete_task(task.id, "r", {"delta": -0.0}, {"gain": [-0.0]})

    assert math.copysign(1, done.response_data["delta"]) == 1
    assert math.copysign(1, done.metadata["gain"][0]) == 1
    assert done == ledger.get_task(task.id)


def test_deep_json_is_rejected_without_recursion_error(ledger: TaskLedger) -> None:
    task = created(ledger)
    deep = nested(1000)

    with pytest.raises(InvalidInputError, match="nested deeper"):
        ledger.complete_task(task.id, "r", deep)
    with pytest.raises(InvalidInputError, match="nested deeper"):
        ledger.wait_task(task.id, {"deep": deep})
    with pytest.raises(InvalidInputError, match="nested deeper"):
        ledger.create_task("a", "A", "m", "chat", metadata={"deep": deep})

    assert ledger.get_task(task.id).version == 2


def test_self_referencing_json_is_rejected(ledger: TaskLedger) -> None:
    task = created(ledger)
    loop: list[Any] = []
    loop.append(loop)

    with pytest.raises(InvalidInputError, match="nested deeper"):
        ledger.complete_task(task.id, "r", loop)


def test_nesting_at_limit_is_stored(ledger: TaskLedger) -> None:
    task = created(ledger)
    # nested(32) is 64 containers deep (32 objects, 32 lists), the most allowed.
    data = nested(32)

    with pytest.raises(InvalidInputError, match="nested deeper"):
        ledger.complete_task(task.id, "r", nested(33))
    done = ledger.complete_task(task.id, "r", data)

    assert done.response_data == data
    assert ledger.get_task(task.id).response_data == data


ID_NAMES = ["agent_id", "agent_name", "task_type", "user_id"]
CONTEXT_NAMES = ["actor", "correlation_id", "causation_id", "idempotency_key"]


@pytest.mark.parametrize("name", ID_NAMES + CONTEXT_NAMES)
def test_overlong_ids_are_rejected(ledger: TaskLedger, name: str) -> None:
    arguments: dict[str, Any] = {
        "agent_id": "a",
        "agent_name": "A",
        "message": "m",
        "task_type": "chat",
        name: "x" * (MAX_ID_LENGTH + 1),
    }

    with pytest.raises(InvalidInputError, match=name):
        ledger.create_task(**arguments)


@pytest.mark.parametrize("name", CONTEXT_NAMES)
def test_overlong_context_on_change_keeps_version(
    ledger: TaskLedger, name: str
) -> None:
    task = created(ledger)

    with pytest.raises(InvalidInputError, match=name):
        ledger.wait_task(task.id, **{name: "x" * (MAX_ID_LENGTH + 1)})

    assert ledger.get_task(task.id).version == 2


def test_ids_at_limit_are_stored(ledger: TaskLedger) -> None:
    longest = "x" * MAX_ID_LENGTH

    task = ledger.create_task(longest, longest, "m", longest, longest)

    assert ledger.get_task(task.id).agent_id == longest


def test_overlong_texts_are_rejected(ledger: TaskLedger, db: Db) -> None:
    task = created(ledger)
    # 2-byte characters: the limit is on UTF-8 bytes, not on characters.
    text = "é" * (MAX_TEXT_BYTES // 2 + 1)

    with pytest.raises(InvalidInputError, match="message"):
        ledger.create_task("a", "A", text, "chat")
    with pytest.raises(InvalidInputError, match="response"):
        ledger.complete_task(task.id, text)
    with pytest.raises(InvalidInputError, match="error_message"):
        ledger.fail_task(task.id, text)
    with pytest.raises(InvalidInputError, match="reason"):
        ledger.cancel_task(task.id, text)

    assert ledger.get_task(task.id).version == 2
    assert event_count(db) == 2


def test_oversized_payload_is_rejected(ledger: TaskLedger, db: Db) -> None:
    task = created(ledger)
    half = "x" * (MAX_EVENT_BYTES // 2)

    with pytest.raises(InvalidInputError, match="payload"):
        ledger.complete_task(task.id, "r", [half, half])
    with pytest.raises(InvalidInputError, match="payload"):
        ledger.wait_task(task.id, {"a": half, "b": half})
    with pytest.raises(InvalidInputError, match="payload"):
        ledger.create_task("a", "A", "m", "chat", metadata={"a": half, "b": half})

    assert ledger.get_task(task.id).version == 2
    assert event_count(db) == 2


def test_big_integers_read_back_exactly(ledger: TaskLedger) -> None:
    task = ledger.create_task("a", "A", "m", "chat", metadata={"big": BIG})
    ledger.start_task(task.id, {"bigger": 2**200, "negative": -BIG})
    done = ledger.complete_task(task.id, "r", {"ids": [BIG, 2**64]})

    for record in (done, ledger.get_task(task.id), replayed(ledger, task.id)):
        assert record.metadata == {"big": BIG, "bigger": 2**200, "negative": -BIG}
        assert record.response_data == {"ids": [BIG, 2**64]}
        assert isinstance(record.metadata["big"], int)


def test_integer_with_too_many_digits_is_rejected(ledger: TaskLedger) -> None:
    task = created(ledger)

    with pytest.raises(InvalidInputError, match="digits"):
        ledger.complete_task(task.id, "r", {"huge": 10**5000})

    assert ledger.get_task(task.id).version == 2


@pytest.mark.parametrize(
    "value",
    [b"bytes", {1: "non-string key"}, {"set"}, object(), 1 + 2j],
    ids=["bytes", "int-key", "set", "object", "complex"],
)
def test_non_json_values_are_rejected(ledger: TaskLedger, value: Any) -> None:
    task = created(ledger)

    with pytest.raises(InvalidInputError):
        ledger.complete_task(task.id, "r", {"v": value})

    assert ledger.get_task(task.id).version == 2


def test_rejected_commands_keep_version(ledger: TaskLedger, db: Db) -> None:
    task = created(ledger)
    rejected: list[tuple[type[Exception], Callable[[], object]]] = [
        (InvalidInputError, lambda: ledger.complete_task(task.id, "r", math.nan)),
        (InvalidInputError, lambda: ledger.retry_task(task.id, {"x": math.inf})),
        (InvalidInputError, lambda: ledger.fail_task(task.id, 42)),  # type: ignore[arg-type]
        (InvalidInputError, lambda: ledger.wait_task(task.id, "no")),  # type: ignore[arg-type]
        (InvalidInputError, lambda: ledger.update_task_status(task.id, "paused")),
        (InvalidInputError, lambda: ledger.start_task("not-a-uuid")),
        (InvalidInputError, lambda: ledger.wait_task(task.id, actor="   ")),
        (InvalidTransitionError, lambda: ledger.start_task(task.id)),
    ]

    for error, command in rejected:
        with pytest.raises(error):
            command()

    current = ledger.get_task(task.id)
    assert current.version == 2
    assert current.status is TaskStatus.PROCESSING
    assert event_count(db) == 2


def test_text_limit_counts_replacement_bytes(ledger: TaskLedger) -> None:
    # Each NUL becomes U+FFFD, 3 bytes in UTF-8, so this grows past the limit.
    text = "\x00" * (MAX_TEXT_BYTES // 3 + 1)

    with pytest.raises(InvalidInputError, match="message"):
        ledger.create_task("a", "A", text, "chat")
