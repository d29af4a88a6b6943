"""Append imported transitions to the ledger in batches, idempotently.

Each batch loads the tasks it meets that are not in memory (one query), decides
every transition in memory with the tasks' aggregates, and appends all the
resulting commands in one transaction. If that append hits a conflict (another
writer took a version or an idempotency key), the batch is redone one command
at a time from the ledger's state. Tasks that reach a terminal status leave
memory, so memory follows the tasks in flight, not the length of the file.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent

from domain.errors import LedgerError
from infrastructure.errors import translated_errors
from infrastructure.recorders import AppendContext, TaskEventsRecorder
from taskledger.importing.history import TaskLoader, TrackedTask, idempotency_key
from taskledger.importing.planner import TransitionRejectedError, plan_transition
from taskledger.importing.records import (
    Entry,
    Ignored,
    ReadRules,
    Rejected,
    Transition,
)
from taskledger.ledger import TaskLedger

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
MAX_APPEND_ATTEMPTS = 3


@dataclass
class ImportSummary:
    """Counts of entries: imported (appended), skipped (already in the ledger),
    rejected (reported) and ignored (no transition)."""

    imported: int = 0
    skipped: int = 0
    rejected: int = 0
    ignored: int = 0
    stopped_at: Rejected | None = None
    tasks_in_memory: int = 0
    last_position: int = 0

    def add(self, other: ImportSummary) -> None:
        self.imported += other.imported
        self.skipped += other.skipped
        self.rejected += other.rejected
        self.ignored += other.ignored
        self.stopped_at = self.stopped_at or other.stopped_at
        self.last_position = max(self.last_position, other.last_position)


@dataclass
class _Outcome:
    """What one batch decided, published only once its append has committed."""

    counts: ImportSummary = field(default_factory=ImportSummary)
    rejections: list[Rejected] = field(default_factory=list)
    appends: list[tuple[list[StoredEvent], AppendContext]] = field(default_factory=list)
    touched: set[UUID] = field(default_factory=set)

    def reject(self, rejected: Rejected, strict: bool) -> None:
        self.counts.rejected += 1
        self.rejections.append(rejected)
        if strict:
            self.counts.stopped_at = rejected


class Importer:
    """Imports entries from one source into a ledger."""

    def __init__(
        self,
        ledger: TaskLedger,
        *,
        source: str,
        rules: ReadRules,
        strict: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_rejected: Callable[[Rejected], None] | None = None,
    ) -> None:
        # The importer appends through the recorder directly, beside the
        # facade's commands, so that one transaction carries a whole batch.
        self.app = ledger.application
        recorder = self.app.recorder
        assert isinstance(recorder, TaskEventsRecorder)
        self.recorder = recorder
        self.source = source
        self.rules = rules
        self.strict = strict
        self.batch_size = batch_size
        self.on_rejected = on_rejected
        self.loader = TaskLoader(self.app, source)
        self.tracked: dict[UUID, TrackedTask] = {}
        self.summary = ImportSummary()
        # Batches that conflicted with another writer. Only the first warns.
        self.conflicts = 0

    def run(
        self,
        entries: Iterable[Entry],
        on_batch: Callable[[ImportSummary], None] | None = None,
    ) -> ImportSummary:
        """Import every entry (or up to the first rejected one when strict)."""
        for batch in _batches(entries, self.batch_size):
            with translated_errors("importing"):
                self._import_batch(batch)
            if on_batch is not None:
                on_batch(self.summary)
            if self.summary.stopped_at is not None:
                break
        return self.summary

    def _import_batch(self, batch: list[Entry]) -> None:
        self._load_missing(batch)
        outcome = _Outcome()
        try:
            for entry in batch:
                if not self._decide(entry, outcome):
                    break
            self._append(outcome)
        except IntegrityError as error:
            self._log_conflict(len(batch), error)
            for task_id in outcome.touched:
                self.tracked.pop(task_id, None)
            outcome = self._import_one_by_one(batch)
        self._publish(outcome)
        self._evict(outcome.touched)

    def _log_conflict(self, entries: int, error: IntegrityError) -> None:
        """Warn of the first batch that conflicted, and log the others at debug."""
        self.conflicts += 1
        reason = str(error).splitlines()[0]
        extra = {"action": "import_batch_conflict", "source": self.source}
        if self.conflicts == 1:
            logger.warning(
                "a batch of %d entries conflicted with another writer (%s), perhaps "
                "another import of the same file; this batch and any later "
                "conflicting one are imported one entry at a time, which is slower",
                entries,
                reason,
                extra=extra,
            )
        else:
            logger.debug(
                "a batch of %d entries conflicted with another writer (%s); "
                "importing it one entry at a time",
                entries,
                reason,
                extra=extra,
            )

    def _import_one_by_one(self, batch: list[Entry]) -> _Outcome:
        total = _Outcome()
        for entry in batch:
            single = self._import_single(entry)
            total.counts.add(single.counts)
            total.rejections.extend(single.rejections)
            total.touched |= single.touched
            if total.counts.stopped_at is not None:
                break
        return total

    def _import_single(self, entry: Entry) -> _Outcome:
        last_error: IntegrityError | None = None
        for _ in range(MAX_APPEND_ATTEMPTS):
            if isinstance(entry, Transition):
                self._load_missing([entry])
            outcome = _Outcome()
            self._decide(entry, outcome)
            try:
                self._append(outcome)
            except IntegrityError as error:
                last_error = error
                if isinstance(entry, Transition):
                    self.tracked.pop(entry.task_id, None)
                continue
            return outcome
        assert isinstance(entry, Transition)
        outcome = _Outcome()
        outcome.touched.add(entry.task_id)
        reason = f"another writer kept changing the task: {last_error}"
        outcome.reject(Rejected(entry.line, entry.where, reason), self.strict)
        return outcome

    def _load_missing(self, batch: Iterable[Entry]) -> None:
        first_lines: dict[UUID, int] = {}
        for entry in batch:
            if isinstance(entry, Transition) and entry.task_id not in self.tracked:
                first_lines.setdefault(entry.task_id, entry.line)
        self.tracked.update(self.loader.load(first_lines))

    def _decide(self, entry: Entry, outcome: _Outcome) -> bool:
        """Decide one entry into the outcome; return False to stop the batch."""
        if isinstance(entry, Rejected):
            outcome.reject(entry, self.strict)
            return not self.strict
        if isinstance(entry, Ignored):
            outcome.counts.ignored += 1
            return True
        outcome.touched.add(entry.task_id)
        tracked = self.tracked[entry.task_id]
        tracked.skip_foreign(self.source)
        try:
            self._decide_transition(entry, tracked, outcome)
        except (TransitionRejectedError, LedgerError) as error:
            reason = str(error) + _source_hint(tracked.other_source)
            outcome.reject(Rejected(entry.line, entry.where, reason), self.strict)
            return not self.strict
        return True

    def _decide_transition(
        self, entry: Transition, tracked: TrackedTask, outcome: _Outcome
    ) -> None:
        if _imported_elsewhere(entry, tracked):
            outcome.counts.skipped += 1
            return
        plan = plan_transition(tracked.task, entry, self.rules)
        if plan is None:
            outcome.counts.ignored += 1
            return
        key = idempotency_key(entry.task_id, tracked.next_ordinal)
        recorded = tracked.next_ahead()
        if recorded is not None:
            if recorded.key != key or recorded.fingerprint != plan.fingerprint:
                raise TransitionRejectedError(
                    f"an earlier import of {self.source!r} recorded a different "
                    f"transition for task {entry.external_id!r} here (idempotency "
                    f"key {recorded.key}); the file changed since that import"
                )
            tracked.apply_next_ahead()
            outcome.counts.skipped += 1
            return
        # plan_transition checked the same rules as the aggregate, so applying
        # the plan does not raise.
        task = plan.apply(tracked.task)
        tracked.task = task
        tracked.next_ordinal += 1
        stored = [self.app.mapper.to_stored_event(e) for e in task.collect_events()]
        context = AppendContext(
            metadata={
                "command": {"fingerprint": plan.fingerprint},
                "import": {"source": self.source, "line": entry.line},
            },
            idempotency_key=key,
            use_database_clock=False,
        )
        outcome.appends.append((stored, context))
        outcome.counts.imported += 1

    def _append(self, outcome: _Outcome) -> None:
        if outcome.appends:
            appended = self.recorder.append_commands(outcome.appends)
            outcome.counts.last_position = appended[-1].position

    def _publish(self, outcome: _Outcome) -> None:
        self.summary.add(outcome.counts)
        if self.on_rejected is not None:
            for rejected in outcome.rejections:
                self.on_rejected(rejected)

    def _evict(self, touched: Iterable[UUID]) -> None:
        for task_id in touched:
            tracked = self.tracked.get(task_id)
            if tracked is None or tracked.ahead is not None:
                continue
            if tracked.task is None or tracked.task.status.is_terminal:
                del self.tracked[task_id]
        self.summary.tasks_in_memory = len(self.tracked)


def _imported_elsewhere(entry: Transition, tracked: TrackedTask) -> bool:
    """Return whether another source imported this transition of the task.

    A renamed copy of a file, or a log that overlaps another, repeats such
    transitions, and they are skipped, unless this source recorded the same
    transition at this point.
    """
    transition = (entry.status, entry.occurred_at)
    recorded = tracked.next_ahead()
    if recorded is not None and recorded.transition == transition:
        return False
    return tracked.repeats_elsewhere(transition)


def _source_hint(other_source: str | None) -> str:
    """Return the hint that names the source of a task, for a renamed file."""
    if other_source is None:
        return ""
    return (
        f"; the task was imported from {other_source!r}, so if this file is that "
        f"one renamed or compressed, import it with the source {other_source!r} "
        f"(--source {shlex.quote(other_source)})"
    )


def _batches(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    iterator = iter(entries)
    while batch := list(islice(iterator, size)):
        yield batch
