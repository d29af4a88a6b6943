"""Record a few task lifecycles on the embedded PostgreSQL and print their history."""

from __future__ import annotations

from taskledger import InvalidTransitionError, TaskLedger


def main() -> None:
    with TaskLedger.open() as ledger:
        task = ledger.create_task(
            "marketing", "Marketing", "Draft a post", "generation"
        )
        ledger.start_task(task.id, actor="worker-1")
        done = ledger.complete_task(
            task.id, response="Here is the post", metadata={"tokens": 812}
        )
        print(f"{done.id} {done.status} after {done.duration_ms} ms")

        flaky = ledger.create_task("support", "Support", "Answer a ticket", "chat")
        ledger.start_task(flaky.id)
        ledger.fail_task(flaky.id, "model timed out")
        ledger.retry_task(flaky.id)
        ledger.start_task(flaky.id)
        flaky_done = ledger.complete_task(flaky.id, response="Answered")
        print(f"{flaky_done.id} {flaky_done.status} in {flaky_done.attempts} attempts")

        try:
            ledger.fail_task(flaky.id, "a late failure report")
        except InvalidTransitionError as error:
            print(f"rejected: {error}")


if __name__ == "__main__":
    main()
