"""Deterministic task lifecycles and the events, rows and lines made from them.

Every benchmark draws its tasks from plan_tasks(), so the ledger and its
baselines store the same tasks with the same event payloads.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from eventsourcing.persistence import StoredEvent

from domain.task import Task
from infrastructure.mapper import PydanticMapper

T = TypeVar("T")

AGENTS = (
    ("marketing", "Marketing"),
    ("sales", "Sales"),
    ("support", "Support"),
    ("research", "Research"),
    ("operations", "Operations"),
)
TASK_TYPES = ("generation", "analysis", "research", "chat")
USERS = tuple(str(uuid.UUID(int=n + 1, version=4)) for n in range(1000))

# Lifecycles and their shares of all tasks: 2.8 events per task on average.
SHAPES: tuple[tuple[tuple[str, ...], float], ...] = (
    (("create", "start", "complete"), 0.55),
    (("create", "start", "fail"), 0.10),
    (("create", "start", "fail", "retry", "start", "complete"), 0.05),
    (("create",), 0.10),
    (("create", "start"), 0.10),
    (("create", "start", "wait"), 0.05),
    (("create", "cancel"), 0.05),
)
MEAN_EVENTS_PER_TASK = sum(len(steps) * share for steps, share in SHAPES)

# Seconds between two steps of one task: picked up quickly, finished in minutes.
_STEP_GAPS = {
    "start": (0.2, 20.0),
    "complete": (1.0, 180.0),
    "fail": (1.0, 60.0),
    "retry": (5.0, 60.0),
    "wait": (1.0, 30.0),
    "cancel": (1.0, 600.0),
}
_MESSAGE = "Draft a short post about the product launch for the newsletter."
_RESPONSE = "Here is a draft of about two hundred words. " * 5


@dataclass(frozen=True)
class TaskPlan:
    """One task's lifecycle: who runs it and when each step happens."""

    task_id: uuid.UUID
    agent_id: str
    agent_name: str
    task_type: str
    user_id: str
    steps: tuple[str, ...]
    times: tuple[datetime, ...]


def plan_tasks(
    count: int,
    *,
    seed: int = 1,
    end: datetime | None = None,
    span: timedelta = timedelta(days=30),
) -> Iterator[TaskPlan]:
    """Yield count task plans whose creations spread evenly over span up to end."""
    rng = random.Random(seed)
    finish = end or datetime(2026, 12, 1, tzinfo=UTC)
    first = finish - span
    shapes = [steps for steps, _ in SHAPES]
    weights = [share for _, share in SHAPES]
    step = span / max(count, 1)
    for index in range(count):
        steps = rng.choices(shapes, weights)[0]
        moment = first + step * index
        times = [moment]
        for name in steps[1:]:
            low, high = _STEP_GAPS[name]
            moment += timedelta(seconds=rng.uniform(low, high))
            times.append(moment)
        agent_id, agent_name = AGENTS[rng.randrange(len(AGENTS))]
        yield TaskPlan(
            task_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            agent_id=agent_id,
            agent_name=agent_name,
            task_type=TASK_TYPES[rng.randrange(len(TASK_TYPES))],
            user_id=USERS[rng.randrange(len(USERS))],
            steps=steps,
            times=tuple(times),
        )


def decide(plan: TaskPlan) -> Task:
    """Run a plan's commands on a new Task aggregate, at the planned times."""
    task = Task.create(
        task_id=plan.task_id,
        agent_id=plan.agent_id,
        agent_name=plan.agent_name,
        message=_MESSAGE,
        task_type=plan.task_type,
        user_id=plan.user_id,
        metadata={"source": "bench"},
        timestamp=plan.times[0],
    )
    for name, moment in zip(plan.steps[1:], plan.times[1:], strict=True):
        apply_step(task, name, moment)
    return task


def apply_step(task: Task, name: str, moment: datetime | None) -> None:
    """Apply one non-create step of a lifecycle to the aggregate."""
    if name == "start":
        task.start(metadata={}, timestamp=moment)
    elif name == "complete":
        task.complete(
            response=_RESPONSE,
            response_data={"words": 200},
            metadata={"tokens": 812, "duration_ms": 4200},
            timestamp=moment,
        )
    elif name == "fail":
        task.fail(error_message="model timed out", metadata={}, timestamp=moment)
    elif name == "retry":
        task.retry(metadata={}, timestamp=moment)
    elif name == "wait":
        task.wait(metadata={"question": "which tone?"}, timestamp=moment)
    elif name == "cancel":
        task.cancel(reason="user cancelled", metadata={}, timestamp=moment)
    else:
        raise ValueError(f"unknown step {name!r}")


def step_arguments(name: str) -> dict[str, Any]:
    """Return the keyword arguments of the TaskLedger command for a step."""
    if name == "complete":
        return {
            "response": _RESPONSE,
            "response_data": {"words": 200},
            "metadata": {"tokens": 812, "duration_ms": 4200},
        }
    if name == "fail":
        return {"error_message": "model timed out"}
    if name == "wait":
        return {"metadata": {"question": "which tone?"}}
    if name == "cancel":
        return {"reason": "user cancelled"}
    return {}


def create_arguments(plan: TaskPlan) -> dict[str, Any]:
    """Return the keyword arguments of TaskLedger.create_task for a plan."""
    return {
        "agent_id": plan.agent_id,
        "agent_name": plan.agent_name,
        "message": _MESSAGE,
        "task_type": plan.task_type,
        "user_id": plan.user_id,
        "metadata": {"source": "bench"},
    }


def stored_events(
    plans: Sequence[TaskPlan], mapper: PydanticMapper
) -> list[StoredEvent]:
    """Encode the events of the plans, interleaved in the order they occurred."""
    timed: list[tuple[datetime, int, StoredEvent]] = []
    for plan in plans:
        for event in decide(plan).collect_events():
            stored = mapper.to_stored_event(event)
            timed.append((event.timestamp, len(timed), stored))
    timed.sort(key=lambda item: (item[0], item[1]))
    return [stored for _, _, stored in timed]


def chunks(items: Iterator[T], size: int) -> Iterator[list[T]]:
    """Yield lists of size items (the last one may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def template_events(mapper: PydanticMapper) -> list[StoredEvent]:
    """Return the created, started and completed events of one task.

    A payload names no task, so the same bytes can be stored under any task id.
    """
    plan = TaskPlan(
        task_id=uuid.uuid4(),
        agent_id="marketing",
        agent_name="Marketing",
        task_type="generation",
        user_id=USERS[0],
        steps=("create", "start", "complete"),
        times=(
            datetime(2026, 11, 1, tzinfo=UTC),
            datetime(2026, 11, 1, 0, 0, 2, tzinfo=UTC),
            datetime(2026, 11, 1, 0, 0, 30, tzinfo=UTC),
        ),
    )
    return [mapper.to_stored_event(event) for event in decide(plan).collect_events()]
