from __future__ import annotations

import pytest

from domain.errors import InvalidTransitionError
from domain.status import ALLOWED_TRANSITIONS, TaskStatus, is_allowed
from domain.task import Task


def new_task() -> Task:
    return Task.create(agent_id="a", agent_name="A", message="m", task_type="chat")


def test_terminal_statuses_accept_only_retry() -> None:
    for status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
        assert ALLOWED_TRANSITIONS[status] == {TaskStatus.PENDING}


def test_pending_cannot_complete() -> None:
    assert not is_allowed(TaskStatus.PENDING, TaskStatus.COMPLETED)


def test_rejected_transition_names_task_and_statuses() -> None:
    task = new_task()

    with pytest.raises(InvalidTransitionError) as caught:
        task.complete(response="x", response_data=None, metadata={}, timestamp=None)

    assert caught.value.task_id == task.id
    assert caught.value.current == "pending"
    assert caught.value.requested == "completed"
    assert task.version == 1


def test_retry_counts_attempts_and_clears_results() -> None:
    task = new_task()
    task.start(metadata={}, timestamp=None)
    task.fail(error_message="boom", metadata={}, timestamp=None)

    task.retry(metadata={}, timestamp=None)

    assert task.record.attempts == 2
    assert task.record.error_message is None
    assert task.status is TaskStatus.PENDING


def test_requeue_from_processing_is_a_retry() -> None:
    task = new_task()
    task.start(metadata={}, timestamp=None)

    task.retry(metadata={}, timestamp=None)

    assert task.record.attempts == 2
    assert type(task.pending_events[-1]) is Task.Retried
