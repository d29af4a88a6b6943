"""Run the projector alone in this process until SIGTERM, for process tests.

Usage: python -m tests.projections.projector_process URL SCHEMA LOG BATCH_SIZE
Each committed batch appends a line "first_position last_position" to LOG.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from projections.projector import BatchResult
from projections.runner import run_projector


def main() -> None:
    url, schema, log, batch_size = sys.argv[1:5]
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    with open(log, "a", encoding="utf-8") as out:

        def record(result: BatchResult) -> None:
            out.write(f"{result.first_position} {result.last_position}\n")
            out.flush()

        run_projector(
            url,
            schema,
            stop,
            on_batch=record,
            poll_interval=0.1,
            batch_size=int(batch_size),
        )


if __name__ == "__main__":
    main()
