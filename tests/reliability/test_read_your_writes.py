"""Read-your-writes: after a command returns, the same TaskLedger's queries show it.

The guarantee covers the ledger's own writes, whether it runs the projector
itself or relies on one in another process (project=False). A reader that did
not write gets it by passing the position of the write to wait_for_projection.
"""

from __future__ import annotations

import threading
import time

from taskledger import TaskLedger, TaskRecord, TaskStatus

WRITERS = 4
TASKS_PER_WRITER = 15


def test_each_command_is_read_back(ledger: TaskLedger) -> None:
    reads: list[tuple[TaskRecord, TaskRecord]] = []
    lock = threading.Lock()

    def write() -> None:
        for _ in range(TASKS_PER_WRITER):
            task = ledger.create_task("a", "A", "m", "chat")
            for command in (ledger.start_task, ledger.wait_task, ledger.start_task):
                written = command(task.id)
                read = ledger.get_task(task.id)
                with lock:
                    reads.append((written, read))

    threads = [threading.Thread(target=write) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(reads) == WRITERS * TASKS_PER_WRITER * 3
    for written, read in reads:
        assert read == written


def test_ledger_without_projector_reads_own_writes(
    ledger: TaskLedger, other: TaskLedger
) -> None:
    # ledger runs the projector; other, opened with project=False, does not.
    task = other.create_task("a", "A", "m", "chat")
    started = other.start_task(task.id)

    began = time.monotonic()
    read = other.get_task(task.id)
    waited = time.monotonic() - began

    assert read == started
    assert read.status is TaskStatus.PROCESSING
    assert waited < 5


def test_reader_waits_for_a_given_position(
    ledger: TaskLedger, other: TaskLedger
) -> None:
    done = other.complete_task(
        other.start_task(other.create_task("a", "A", "m", "chat").id).id, "ok"
    )

    ledger.wait_for_projection(done.position or 0)

    assert ledger.get_task(done.id) == done
