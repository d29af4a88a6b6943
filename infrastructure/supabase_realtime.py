"""Follow agent_tasks through Supabase Realtime, filling every gap with SQL.

supabase-py's Realtime client loses the changes made while its socket is down,
and stops reconnecting after a few failed attempts. This consumer therefore
treats the Realtime channel as a fast but lossy feed:

- it turns off the client's own reconnecting, and builds a new client whenever
  the channel reports an error, a timeout or a close;
- after every (re)subscription, after a payload it cannot use, and when its
  queue of live payloads overflows, it reads task_updates after its position
  through SQL (catch-up);
- it delivers an update only if its position is above the last one delivered,
  so live payloads that catch-up already covered are dropped.

Live payloads arrive in commit order and, within a batch, in position order
(the projector writes each batch's agent_tasks rows by position), so positions
only grow. A live payload is the task after its last event of a projector
batch (see supabase_realtime_payload); catch-up delivers one update per event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

import psycopg
from psycopg.rows import DictRow, dict_row
from realtime import AsyncRealtimeChannel
from realtime.types import (
    PostgresChangesPayload,
    RealtimePostgresChangesListenEvent,
    RealtimeSubscribeStates,
)

from domain.update import TaskUpdate, UpdatesPrunedError
from infrastructure.listen_updates import (
    UpdateFilter,
    UpdateQueries,
    UpdateTables,
    aread_head,
    aread_updates,
)
from infrastructure.supabase_realtime_payload import (
    IncompletePayloadError,
    update_from_payload,
)
from supabase import AsyncClient, AsyncClientOptions, acreate_client

logger = logging.getLogger(__name__)

APPLICATION_NAME = "taskledger-realtime"
READ_AHEAD = 100
DEFAULT_QUEUE_SIZE = 1000
INITIAL_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
SUBSCRIBE_TIMEOUT_SECONDS = 30.0
# A consumer that heard nothing for this long checks the socket and the channel
# and catches up through SQL, in case the client failed without reporting it.
IDLE_CHECK_SECONDS = 15.0


class RealtimeChannelError(Exception):
    """The Realtime channel could not be joined, or failed after joining."""


class _Session:
    """One supabase client with one channel, and what its callbacks received."""

    def __init__(self, queue_size: int) -> None:
        self.client: AsyncClient | None = None
        self.channel: AsyncRealtimeChannel | None = None
        self.payloads: asyncio.Queue[PostgresChangesPayload] = asyncio.Queue(queue_size)
        self.status: RealtimeSubscribeStates | None = None
        self.failure: str | None = None
        # Set when the payloads alone no longer cover every change.
        self.needs_catch_up = False
        self.wakeup = asyncio.Event()

    # The three callbacks below are plain functions, as supabase-py requires;
    # they run on the event loop, between awaits of the consumer.

    def on_change(self, payload: PostgresChangesPayload) -> None:
        try:
            self.payloads.put_nowait(payload)
        except asyncio.QueueFull:
            self.needs_catch_up = True
        self.wakeup.set()

    def on_status(
        self, status: RealtimeSubscribeStates, error: Exception | None
    ) -> None:
        self.status = status
        if status is not RealtimeSubscribeStates.SUBSCRIBED:
            self.failure = status.value if error is None else f"{status.value}: {error}"
        self.wakeup.set()

    def on_system(self, payload: object) -> None:
        # Realtime confirms with a system message when the postgres_changes
        # subscription is attached to the database; changes committed before
        # that are read by another catch-up.
        self.needs_catch_up = True
        self.wakeup.set()

    def check(self) -> None:
        """Record a failure if the socket or channel is down, else ask for catch-up."""
        client, channel = self.client, self.channel
        if client is None or channel is None or not client.realtime.is_connected:
            self.failure = "the socket closed without a status report"
        elif not channel.is_joined:
            self.failure = f"the channel is {channel.state.value}"
        else:
            self.needs_catch_up = True

    async def close(self) -> None:
        if self.client is None:
            return
        try:
            await self.client.remove_all_channels()
        except Exception as error:
            logger.debug("closing the Realtime client failed: %r", error)


class SupabaseRealtimeConsumer:
    """Yields the updates of agent_tasks that Supabase Realtime reports, gap-free.

    supabase_url and supabase_key reach the Realtime server. access_token, if
    given, is a user's JWT, so that row level security limits the payloads to
    that user's tasks. database_url serves the catch-up reads of task_updates,
    which see every task, so give the filter (for example user_id) that row
    level security applies. Without after_position, delivery starts at the
    head when iteration starts.
    """

    def __init__(
        self,
        supabase_url: str,
        supabase_key: str,
        database_url: str,
        *,
        schema: str = "public",
        update_filter: UpdateFilter | None = None,
        after_position: int | None = None,
        access_token: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.supabase_url = supabase_url
        self._supabase_key = supabase_key
        self._database_url = database_url
        self._access_token = access_token
        self.schema = schema
        self.filter = update_filter or UpdateFilter()
        self.queue_size = queue_size
        self._queries = UpdateQueries(UpdateTables(schema))
        self._position = after_position

    @property
    def position(self) -> int | None:
        """The position up to which every matching update has been delivered."""
        return self._position

    async def updates(self) -> AsyncGenerator[TaskUpdate, None]:
        """Yield matching updates in position order, reconnecting as needed.

        Runs until the caller stops iterating. Raises UpdatesPrunedError when
        retention deleted updates that were not delivered yet.
        """
        if self._position is None:
            async with await self._connect_database() as conn:
                self._position = await aread_head(conn, self._queries)
        backoff = INITIAL_BACKOFF_SECONDS
        outage_started: float | None = None
        while True:
            session = _Session(self.queue_size)
            try:
                await self._open(session)
                if outage_started is not None:
                    _log_restored(time.monotonic() - outage_started, self._position)
                    outage_started = None
                backoff = INITIAL_BACKOFF_SECONDS
                async with aclosing(self._follow(session)) as updates:
                    async for update in updates:
                        yield update
            except UpdatesPrunedError as error:
                logger.error(  # noqa: TRY400 (the message is the whole story)
                    "Realtime consumer stopped: %s",
                    error,
                    extra={"action": "realtime_pruned"},
                )
                raise
            except (RealtimeChannelError, psycopg.Error, OSError) as error:
                if outage_started is None:
                    outage_started = time.monotonic()
                    _log_lost(error, self._position)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                await session.close()

    async def _open(self, session: _Session) -> None:
        options = AsyncClientOptions(
            realtime={"auto_reconnect": False, "max_retries": 1}
        )
        try:
            session.client = await acreate_client(
                self.supabase_url, self._supabase_key, options
            )
            if self._access_token is not None:
                await session.client.realtime.set_auth(self._access_token)
            channel = session.client.channel(f"taskledger:{self.schema}:agent_tasks")
            session.channel = channel
            channel.on_postgres_changes(
                RealtimePostgresChangesListenEvent.All,
                session.on_change,
                table="agent_tasks",
                schema=self.schema,
            )
            channel.on_system(session.on_system)
            await asyncio.wait_for(
                channel.subscribe(session.on_status), SUBSCRIBE_TIMEOUT_SECONDS
            )
        except Exception as error:
            # supabase-py and websockets raise plain Exception, OSError and
            # their own classes alike when the server cannot be reached.
            raise RealtimeChannelError(
                f"joining the channel failed: {error!r}"
            ) from error
        if session.status is not RealtimeSubscribeStates.SUBSCRIBED:
            raise RealtimeChannelError(
                f"joining the channel failed: {session.failure or 'no reply'}"
            )

    async def _follow(self, session: _Session) -> AsyncGenerator[TaskUpdate, None]:
        session.needs_catch_up = True
        while True:
            if session.failure is not None:
                raise RealtimeChannelError(f"the channel failed: {session.failure}")
            if session.needs_catch_up:
                session.needs_catch_up = False
                async with aclosing(self._catch_up()) as updates:
                    async for update in updates:
                        yield update
                continue
            if session.payloads.empty():
                session.wakeup.clear()
                try:
                    await asyncio.wait_for(session.wakeup.wait(), IDLE_CHECK_SECONDS)
                except TimeoutError:
                    session.check()
                continue
            payload = session.payloads.get_nowait()
            try:
                live = update_from_payload(payload, self.schema)
            except IncompletePayloadError as error:
                logger.info(
                    "Realtime payload unusable, reading task_updates instead: %s",
                    error,
                    extra={"action": "realtime_payload_incomplete"},
                )
                session.needs_catch_up = True
                continue
            if live is None or live.position <= self._current():
                continue
            self._position = live.position
            if self.filter.matches(live.task):
                yield live

    async def _catch_up(self) -> AsyncGenerator[TaskUpdate, None]:
        async with await self._connect_database() as conn:
            while True:
                batch = await aread_updates(
                    conn, self._queries, self._current(), self.filter, READ_AHEAD
                )
                for update in batch.updates:
                    self._position = update.position
                    yield update
                self._position = max(self._current(), batch.through)
                if len(batch.updates) < READ_AHEAD:
                    return

    async def _connect_database(self) -> psycopg.AsyncConnection[DictRow]:
        return await psycopg.AsyncConnection.connect(
            self._database_url,
            autocommit=True,
            row_factory=dict_row,
            application_name=APPLICATION_NAME,
            connect_timeout=10,
        )

    def _current(self) -> int:
        assert self._position is not None
        return self._position


def _log_lost(error: BaseException, position: int | None) -> None:
    logger.warning(
        "Supabase Realtime consumer lost its feed after position %s, rebuilding "
        "the client with backoff: %s",
        position,
        error,
        extra={"action": "realtime_lost", "position": position},
    )


def _log_restored(outage_seconds: float, position: int | None) -> None:
    logger.warning(
        "Supabase Realtime consumer subscribed again after an outage of %.1f s; "
        "catching up after position %s",
        outage_seconds,
        position,
        extra={
            "action": "realtime_restored",
            "position": position,
            "outage_seconds": round(outage_seconds, 3),
        },
    )
