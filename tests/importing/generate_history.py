"""Write a JSON Lines task history of many interleaved task lifecycles.

Run `python -m tests.importing.generate_history LINES FILE` to write one for
measuring `taskledger import`; the tests use it at a small size.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

START = datetime(2024, 1, 1, tzinfo=UTC)
AGENTS = ["marketing", "sales", "support", "research"]
TASK_TYPES = ["generation", "analysis", "research", "chat"]


def lifecycle(rng: random.Random) -> list[str]:
    """Return the statuses of one task, from its creation to its end."""
    statuses = ["pending", "processing"]
    if rng.random() < 0.1:
        statuses += ["waiting", "processing"]
    if rng.random() < 0.15:
        statuses += ["failed", "pending", "processing"]
    statuses.append("completed" if rng.random() < 0.9 else "failed")
    return statuses


def history_lines(count: int, in_flight: int, seed: int = 1) -> Iterator[str]:
    """Yield `count` lines; about `in_flight` tasks are open at any point."""
    rng = random.Random(seed)  # noqa: S311 (test data)
    open_tasks: list[tuple[str, list[str]]] = []
    moment = START
    number = 0
    written = 0
    while written < count:
        if len(open_tasks) < in_flight:
            number += 1
            open_tasks.append((f"task-{number}", lifecycle(rng)))
        index = rng.randrange(len(open_tasks))
        task_id, statuses = open_tasks[index]
        status = statuses.pop(0)
        moment += timedelta(milliseconds=rng.randrange(1, 500))
        line = {"task_id": task_id, "status": status, "occurred_at": moment.isoformat()}
        if status == "pending" and len(statuses) > 2:
            line.update(
                agent_id=rng.choice(AGENTS),
                task_type=rng.choice(TASK_TYPES),
                message=f"request {number}",
            )
        elif status == "completed":
            line.update(response="done", metadata={"tokens": rng.randrange(100, 900)})
        elif status == "failed":
            line["error_message"] = "model timed out"
        yield json.dumps(line)
        written += 1
        if not statuses:
            open_tasks[index] = open_tasks[-1]
            open_tasks.pop()


def write_history(path: Path, count: int, in_flight: int = 1000) -> None:
    with path.open("w", encoding="utf-8") as file:
        for line in history_lines(count, in_flight):
            file.write(line + "\n")


if __name__ == "__main__":
    write_history(Path(sys.argv[2]), int(sys.argv[1]))
