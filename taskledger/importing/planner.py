"""Decide which commands one imported transition becomes, given the task's state.

A plan is checked against the state machine without touching the aggregate, so
the importer can compare it with what an earlier import recorded before it
applies anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.errors import InvalidInputError
from domain.status import TaskStatus, is_allowed
from domain.task import Task
from domain.values import check_event_size
from taskledger.importing.records import AfterTerminal, ReadRules, Transition

# The command that moves a task into each status (pending means a retry).
_STEP_FOR_STATUS = {
    TaskStatus.PENDING: "retry",
    TaskStatus.PROCESSING: "start",
    TaskStatus.WAITING: "wait",
    TaskStatus.COMPLETED: "complete",
    TaskStatus.FAILED: "fail",
    TaskStatus.CANCELLED: "cancel",
}
_STATUS_AFTER_STEP = {step: status for status, step in _STEP_FOR_STATUS.items()}
_FIRST_STEPS = {
    TaskStatus.PENDING: ("create",),
    TaskStatus.PROCESSING: ("create", "start"),
    TaskStatus.CANCELLED: ("create", "cancel"),
}


class TransitionRejectedError(Exception):
    """The transition does not fit the task's state; the message says why."""


@dataclass(frozen=True)
class Plan:
    """The commands that apply one transition, all at its occurred time."""

    transition: Transition
    steps: tuple[str, ...]
    arguments: dict[str, Any]
    fingerprint: str

    def apply(self, task: Task | None) -> Task:
        """Run the steps on the aggregate (None before creation) and return it."""
        # In UTC, as the facade stores times, because pydantic writes an offset
        # with seconds (local mean time, such as +00:19:32) only to the minute.
        occurred_at = self.transition.occurred_at.astimezone(UTC)
        for index, step in enumerate(self.steps):
            last = index == len(self.steps) - 1
            if step == "create":
                task = Task.create(
                    task_id=self.transition.task_id,
                    timestamp=occurred_at,
                    **self.arguments["create"],
                )
                continue
            assert task is not None
            _run_step(task, step, self.arguments if last else {}, occurred_at)
        assert task is not None
        return task


def plan_transition(
    task: Task | None, transition: Transition, rules: ReadRules
) -> Plan | None:
    """Return the plan for a transition, None if it changes nothing, or raise
    TransitionRejectedError."""
    if task is None:
        steps = _first_steps(transition)
    else:
        chosen = _later_steps(task, transition, rules)
        if chosen is None:
            return None
        steps = chosen
        _check_time(task, transition)
    arguments = _arguments(transition, steps)
    try:
        check_event_size(arguments)
    except InvalidInputError as error:
        raise TransitionRejectedError(str(error)) from None
    return Plan(
        transition, steps, arguments, _fingerprint(transition, steps, arguments)
    )


def _first_steps(transition: Transition) -> tuple[str, ...]:
    steps = _FIRST_STEPS.get(transition.status)
    if steps is None:
        raise TransitionRejectedError(
            f"task {transition.external_id!r} starts with status "
            f"{transition.status}; a task's first transition must be pending, "
            "processing or cancelled"
        )
    return steps


def _later_steps(
    task: Task, transition: Transition, rules: ReadRules
) -> tuple[str, ...] | None:
    current, target = task.status, transition.status
    if target is current and rules.collapse_repeats:
        return None
    if current.is_terminal and target is not TaskStatus.PENDING:
        if rules.after_terminal is AfterTerminal.IGNORE:
            return None
        if rules.after_terminal is AfterTerminal.RETRY:
            reopen = ("retry", "start")
            return (
                reopen
                if target is TaskStatus.PROCESSING
                else (
                    *reopen,
                    _STEP_FOR_STATUS[target],
                )
            )
    if not is_allowed(current, target):
        raise TransitionRejectedError(
            f"task {transition.external_id!r} is {current}: it cannot move to {target}"
        )
    return (_STEP_FOR_STATUS[target],)


def _check_time(task: Task, transition: Transition) -> None:
    occurred_at = transition.occurred_at
    if occurred_at < task.modified_on:
        raise TransitionRejectedError(
            f"occurred_at {occurred_at.isoformat()} of task "
            f"{transition.external_id!r} is earlier than its previous event at "
            f"{task.modified_on.isoformat()}"
        )


def _arguments(transition: Transition, steps: tuple[str, ...]) -> dict[str, Any]:
    """Return the arguments of the steps: creation fields, then those of the last
    step, which also carries the transition's metadata."""
    arguments: dict[str, Any] = {}
    if steps[0] == "create":
        arguments["create"] = {**transition.creation, "metadata": transition.metadata}
        if len(steps) == 1:
            return arguments
    last = steps[-1]
    if steps[0] != "create":
        arguments["metadata"] = transition.metadata
    else:
        arguments["metadata"] = {}
    if last == "complete":
        arguments["response"] = transition.response
        arguments["response_data"] = transition.response_data
    elif last == "fail":
        arguments["error_message"] = transition.error_message or ""
    elif last == "cancel":
        arguments["reason"] = transition.error_message
    return arguments


def _run_step(
    task: Task, step: str, arguments: dict[str, Any], occurred_at: datetime
) -> None:
    metadata = arguments.get("metadata", {})
    if step == "complete":
        task.complete(
            response=arguments.get("response"),
            response_data=arguments.get("response_data"),
            metadata=metadata,
            timestamp=occurred_at,
        )
    elif step == "fail":
        task.fail(
            error_message=arguments.get("error_message", ""),
            metadata=metadata,
            timestamp=occurred_at,
        )
    elif step == "cancel":
        task.cancel(
            reason=arguments.get("reason"), metadata=metadata, timestamp=occurred_at
        )
    else:
        getattr(task, step)(metadata=metadata, timestamp=occurred_at)


def _fingerprint(
    transition: Transition, steps: tuple[str, ...], arguments: dict[str, Any]
) -> str:
    canonical = json.dumps(
        {
            "command": "import:" + "+".join(steps),
            "task_id": str(transition.task_id),
            "occurred_at": transition.occurred_at.isoformat(),
            "arguments": arguments,
        },
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def status_after(steps: tuple[str, ...]) -> TaskStatus:
    """Return the status a task has after the steps of a plan."""
    last = steps[-1]
    return TaskStatus.PENDING if last == "create" else _STATUS_AFTER_STEP[last]
