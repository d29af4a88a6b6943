"""`async for` over task updates, built on a callback subscription.

The subscription's delivery thread hands each update to an asyncio.Queue of
limited size and waits while the queue is full. A slow async consumer
therefore makes its subscription lag behind in task_updates, where the rows
wait, instead of filling memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from domain.update import TaskUpdate
from infrastructure.listen_updates import UpdateFilter
from projections.subscriptions import READ_AHEAD, Subscription, UpdateFeed

# How often a delivery thread that waits for queue space checks for the end.
_CLOSE_CHECK_SECONDS = 0.1


@dataclass(frozen=True)
class _End:
    error: BaseException | None


async def iterate_updates(
    feed: UpdateFeed,
    update_filter: UpdateFilter,
    after_position: int | None = None,
    *,
    buffer_size: int = READ_AHEAD,
) -> AsyncIterator[TaskUpdate]:
    """Yield the matching updates in position order until the caller stops.

    The subscription starts at the first iteration, so without after_position
    the head is taken then. Leaving the `async for` ends the subscription. An
    error that ends the subscription (UpdatesPrunedError) is raised here.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[TaskUpdate | _End] = asyncio.Queue(buffer_size)
    closed = threading.Event()

    def deliver(update: TaskUpdate) -> None:
        _put(loop, queue, update, closed)

    def ended(subscription: Subscription) -> None:
        if not closed.is_set():
            _put(loop, queue, _End(subscription.error), closed)

    subscription = await asyncio.to_thread(
        feed.subscribe, deliver, update_filter, after_position, on_end=ended
    )
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        closed.set()
        # The delivery thread notices `closed` within _CLOSE_CHECK_SECONDS, so
        # there is no need to block the event loop waiting for it.
        subscription.unsubscribe(timeout=0)


def _put(
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[TaskUpdate | _End],
    item: TaskUpdate | _End,
    closed: threading.Event,
) -> None:
    """Put item on the loop's queue from another thread, waiting for space."""
    try:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
    except RuntimeError:
        # The event loop is closed, so the iterator cannot be read again.
        closed.set()
        return
    while not closed.is_set() and not loop.is_closed():
        try:
            future.result(timeout=_CLOSE_CHECK_SECONDS)
        except TimeoutError:
            continue
        return
    future.cancel()
