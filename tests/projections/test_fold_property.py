"""Property: the read model always equals a plain fold of the events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.status import ALLOWED_TRANSITIONS, TaskStatus
from taskledger import TaskLedger
from tests.projections.helpers import (
    assert_statistics_match,
    expected_counter_rows,
    expected_statistics,
    fold_events,
    projected_counter_rows,
    projected_tasks,
    read_model,
)

BASE = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)

# The command that moves a task to each status; pending is a retry or requeue.
COMMAND_FOR = {
    TaskStatus.PROCESSING: "start",
    TaskStatus.WAITING: "wait",
    TaskStatus.COMPLETED: "complete",
    TaskStatus.FAILED: "fail",
    TaskStatus.CANCELLED: "cancel",
    TaskStatus.PENDING: "retry",
}


@dataclass(frozen=True)
class TaskScript:
    agent_id: str
    task_type: str
    created_at: datetime
    # (command, seconds after the previous event)
    steps: list[tuple[str, int]]


# Creation times within a few hours, or spread over three months so that the
# daily and monthly statistics rows are used too.
created_offsets = st.one_of(
    st.integers(0, 5 * 3600), st.integers(-40 * 86400, 50 * 86400)
)


@st.composite
def task_scripts(draw: st.DrawFn) -> TaskScript:
    status = TaskStatus.PENDING
    steps = []
    for _ in range(draw(st.integers(0, 7))):
        target = draw(st.sampled_from(sorted(ALLOWED_TRANSITIONS[status])))
        steps.append((COMMAND_FOR[target], draw(st.integers(0, 5400))))
        status = target
    return TaskScript(
        agent_id=draw(st.sampled_from(["a", "b"])),
        task_type=draw(st.sampled_from(["chat", "research"])),
        created_at=BASE + timedelta(seconds=draw(created_offsets)),
        steps=steps,
    )


window_edges = st.one_of(
    st.none(),
    st.integers(-60, 8 * 3600).map(lambda seconds: BASE + timedelta(seconds=seconds)),
    st.integers(-45 * 86400, 55 * 86400).map(
        lambda seconds: BASE + timedelta(seconds=seconds)
    ),
    # Whole days and month starts, in UTC and in another offset.
    st.integers(-45, 55).map(lambda days: BASE + timedelta(days=days)),
    st.sampled_from(
        [
            datetime(2026, 4, 1, tzinfo=UTC),
            datetime(2026, 5, 1, tzinfo=UTC),
            datetime(2026, 7, 1, tzinfo=UTC),
            datetime(2026, 7, 1, 2, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 8, 1, tzinfo=UTC),
        ]
    ),
)


def run(ledger: TaskLedger, script: TaskScript) -> None:
    task = ledger.create_task(
        script.agent_id, "Agent", "m", script.task_type, occurred_at=script.created_at
    )
    moment = script.created_at
    for command, delay in script.steps:
        moment += timedelta(seconds=delay)
        arguments: dict[str, object] = {"occurred_at": moment}
        if command == "fail":
            arguments["error_message"] = "broke"
        getattr(ledger, f"{command}_task")(task.id, **arguments)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    scripts=st.lists(task_scripts(), min_size=1, max_size=4),
    since=window_edges,
    until=window_edges,
    agent_id=st.sampled_from([None, "a", "b"]),
    task_type=st.sampled_from([None, "chat"]),
)
def test_read_model_equals_fold(
    ledger: TaskLedger,
    database_url: str,
    schema: str,
    scripts: list[TaskScript],
    since: datetime | None,
    until: datetime | None,
    agent_id: str | None,
    task_type: str | None,
) -> None:
    if since is not None and until is not None and since > until:
        since, until = until, since
    for script in scripts:
        run(ledger, script)
    statistics = ledger.get_statistics(agent_id, task_type, since, until)

    folded = fold_events(database_url, schema)
    assert projected_tasks(database_url, schema) == folded
    records = [task.record for task in folded.values()]
    assert all(r.duration_ms is None or r.duration_ms >= 0 for r in records)
    assert all(r.wait_ms is None or r.wait_ms >= 0 for r in records)
    expected = expected_statistics(records, agent_id, task_type, since, until)
    assert_statistics_match(statistics, expected)
    assert_statistics_match(ledger.get_statistics(), expected_statistics(records))
    assert projected_counter_rows(database_url, schema) == expected_counter_rows(
        records
    )

    before = read_model(database_url, schema)
    ledger.rebuild()
    assert read_model(database_url, schema) == before
