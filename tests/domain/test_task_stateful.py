"""The Task aggregate against a plain model of the task state machine.

Random command sequences run on both. A command that the model rejects must be
rejected by the aggregate, leaving its version unchanged, and after every step
the recorded events, encoded with PydanticMapper and decoded again, must
replay to the model's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from domain.errors import InvalidInputError, InvalidTransitionError
from domain.record import TaskRecord, evolve
from domain.task import Task
from infrastructure.mapper import PydanticMapper

# The transitions as the design states them, written out independently of
# domain.status: command -> (statuses it applies to, resulting status, event).
TRANSITIONS: dict[str, tuple[frozenset[str], str, str]] = {
    "start": (frozenset({"pending", "waiting"}), "processing", "started"),
    "wait": (frozenset({"processing"}), "waiting", "waiting"),
    "complete": (frozenset({"processing", "waiting"}), "completed", "completed"),
    "fail": (frozenset({"processing", "waiting"}), "failed", "failed"),
    "cancel": (
        frozenset({"pending", "processing", "waiting"}),
        "cancelled",
        "cancelled",
    ),
    # From processing or waiting a requeue, from an ended status a retry.
    "retry": (
        frozenset({"processing", "waiting", "completed", "failed", "cancelled"}),
        "pending",
        "retried",
    ),
}
MAX_TASKS = 3

# Text as the facade passes it on: no lone surrogates (it replaces them).
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3)
    ),
    max_leaves=6,
)
metadata = st.dictionaries(st.sampled_from(["a", "b", "tokens", "é"]), json_values)
# None: the event's own clock; a number of seconds after (or, negative,
# before) the task's previous event.
time_offsets = st.none() | st.integers(min_value=-3, max_value=3)


@dataclass
class ModelTask:
    """A task's state as the design's state machine defines it."""

    status: str = "pending"
    attempts: int = 1
    version: int = 1
    response: str | None = None
    response_data: Any = None
    error_message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    last_time: datetime | None = None


@dataclass
class Tracked:
    """One task: the aggregate, its model and every event it recorded."""

    task: Task
    model: ModelTask
    events: list[Task.Event]


def same_json(left: Any, right: Any) -> bool:
    """Compare as JSON, with floats, integers and booleans apart."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(
            same_json(left[key], right[key]) for key in left
        )
    if isinstance(left, list):
        return len(left) == len(right) and all(
            same_json(a, b) for a, b in zip(left, right, strict=True)
        )
    return bool(left == right)


class TaskMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.mapper = PydanticMapper()
        self.tracked: list[Tracked] = []

    @initialize(target=tasks, extra=metadata, user_id=st.none() | texts)
    def create_first(self, extra: dict[str, Any], user_id: str | None) -> Tracked:
        return self._create(extra, user_id)

    @precondition(lambda self: len(self.tracked) < MAX_TASKS)
    @rule(target=tasks, extra=metadata, user_id=st.none() | texts)
    def create(self, extra: dict[str, Any], user_id: str | None) -> Tracked:
        return self._create(extra, user_id)

    def _create(self, extra: dict[str, Any], user_id: str | None) -> Tracked:
        task = Task.create(
            agent_id="agent",
            agent_name="Agent",
            message="message",
            task_type="chat",
            user_id=user_id,
            metadata=extra,
        )
        events = list(task.collect_events())
        model = ModelTask(metadata=dict(extra), last_time=events[0].timestamp)
        tracked = Tracked(task, model, events)
        self.tracked.append(tracked)
        return tracked

    @rule(tracked=tasks, extra=metadata, offset=time_offsets)
    def start(
        self, tracked: Tracked, extra: dict[str, Any], offset: int | None
    ) -> None:
        self._command(tracked, "start", offset, metadata=extra)

    @rule(tracked=tasks, extra=metadata, offset=time_offsets)
    def wait(self, tracked: Tracked, extra: dict[str, Any], offset: int | None) -> None:
        self._command(tracked, "wait", offset, metadata=extra)

    @rule(
        tracked=tasks,
        response=st.none() | texts,
        response_data=json_values,
        extra=metadata,
        offset=time_offsets,
    )
    def complete(
        self,
        tracked: Tracked,
        response: str | None,
        response_data: Any,
        extra: dict[str, Any],
        offset: int | None,
    ) -> None:
        self._command(
            tracked,
            "complete",
            offset,
            response=response,
            response_data=response_data,
            metadata=extra,
        )

    @rule(tracked=tasks, error=texts, extra=metadata, offset=time_offsets)
    def fail(
        self, tracked: Tracked, error: str, extra: dict[str, Any], offset: int | None
    ) -> None:
        self._command(tracked, "fail", offset, error_message=error, metadata=extra)

    @rule(tracked=tasks, reason=st.none() | texts, extra=metadata, offset=time_offsets)
    def cancel(
        self,
        tracked: Tracked,
        reason: str | None,
        extra: dict[str, Any],
        offset: int | None,
    ) -> None:
        self._command(tracked, "cancel", offset, reason=reason, metadata=extra)

    @rule(tracked=tasks, extra=metadata, offset=time_offsets)
    def retry(
        self, tracked: Tracked, extra: dict[str, Any], offset: int | None
    ) -> None:
        self._command(tracked, "retry", offset, metadata=extra)

    def _command(
        self, tracked: Tracked, name: str, offset: int | None, **arguments: Any
    ) -> None:
        model = tracked.model
        sources, target, event_type = TRANSITIONS[name]
        assert model.last_time is not None
        timestamp = None
        if offset is not None:
            timestamp = model.last_time + timedelta(seconds=offset)
        version_before = tracked.task.version
        call = getattr(tracked.task, name)

        if model.status not in sources:
            with pytest.raises(InvalidTransitionError):
                call(timestamp=timestamp, **arguments)
        elif offset is not None and offset < 0:
            with pytest.raises(InvalidInputError, match="earlier"):
                call(timestamp=timestamp, **arguments)
        else:
            call(timestamp=timestamp, **arguments)
            [event] = tracked.task.collect_events()
            assert type(event).event_type == event_type
            tracked.events.append(event)
            apply_to_model(model, name, target, event.timestamp, arguments)
            return

        assert tracked.task.version == version_before
        assert list(tracked.task.collect_events()) == []

    @invariant()
    def events_replay_to_model(self) -> None:
        for tracked in self.tracked:
            record = self._replay(tracked.events)
            model = tracked.model
            assert record.status.value == model.status
            assert record.attempts == model.attempts
            assert record.version == model.version
            assert record.version == tracked.task.version
            assert record.response == model.response
            assert same_json(record.response_data, model.response_data)
            assert record.error_message == model.error_message
            assert same_json(record.metadata, model.metadata)
            assert record == tracked.task.record

    def _replay(self, events: list[Task.Event]) -> TaskRecord:
        record: TaskRecord | None = None
        for event in events:
            decoded = self.mapper.to_domain_event(self.mapper.to_stored_event(event))
            assert isinstance(decoded, Task.Event)
            record = evolve(record, decoded)
        assert record is not None
        return record


def apply_to_model(
    model: ModelTask,
    name: str,
    target: str,
    timestamp: datetime,
    arguments: dict[str, Any],
) -> None:
    model.version += 1
    model.last_time = timestamp
    model.metadata = {**model.metadata, **arguments["metadata"]}
    if name == "retry":
        model.attempts += 1
        model.response = None
        model.response_data = None
        model.error_message = None
    elif name == "complete":
        model.response = arguments["response"]
        model.response_data = arguments["response_data"]
    elif name == "fail":
        model.error_message = arguments["error_message"]
    elif name == "cancel":
        model.error_message = arguments["reason"]
    model.status = target


TaskMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_task_state_machine = TaskMachine.TestCase
