"""Run a unit of work in several threads for a fixed time and count it."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence


def rate(
    workers: Sequence[Callable[[], int]],
    seconds: float,
    warmup: float = 0.5,
) -> float:
    """Return units per second that the workers complete together.

    Each worker runs in its own thread and returns how many units one call
    completed. Calls that finish during the first warmup seconds are not
    counted; every thread stops at the first call finishing after the window.
    """
    barrier = threading.Barrier(len(workers) + 1)
    counts = [0] * len(workers)
    errors: list[BaseException] = []
    window: list[float] = []

    def run(index: int, work: Callable[[], int]) -> None:
        try:
            barrier.wait()
            begin, end = window
            while True:
                done = work()
                now = time.perf_counter()
                if now >= end:
                    return
                if now >= begin:
                    counts[index] += done
        except BaseException as error:
            errors.append(error)
            raise

    threads = [
        threading.Thread(target=run, args=(index, work), daemon=True)
        for index, work in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window.extend([now + warmup, now + warmup + seconds])
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(counts) / seconds


def percentile(values: Sequence[float], share: float) -> float:
    """Return the nearest-rank percentile (share in 0..1) of the values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]
