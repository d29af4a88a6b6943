"""A stand-in for a Supabase Realtime server, enough for the consumer's tests.

It speaks the Phoenix channel protocol as the installed realtime package parses
it (realtime.message). It replies to a join with the postgres_changes bindings
the join requested, confirms the subscription with a system message, replies to
heartbeats and leaves, and pushes the postgres_changes messages that the test
gives it. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

BINDING_ID = 4242


class FakeRealtimeServer:
    def __init__(self) -> None:
        self.joins = 0
        self.topic: str | None = None
        self._connections: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> FakeRealtimeServer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def push(
        self,
        schema: str,
        record: dict[str, Any] | None,
        change: str = "UPDATE",
        errors: list[str] | None = None,
    ) -> None:
        """Send one postgres_changes message for agent_tasks to every client."""
        data: dict[str, Any] = {
            "schema": schema,
            "table": "agent_tasks",
            "commit_timestamp": "2026-12-04T15:31:00.123Z",
            "type": change,
            "errors": errors,
            "columns": [{"name": name, "type": "text"} for name in record or {}],
        }
        if change == "DELETE":
            data["old_record"] = {"id": (record or {}).get("id")}
        else:
            data["record"] = record
        await self._send_all(
            {
                "event": "postgres_changes",
                "topic": self.topic,
                "payload": {"data": data, "ids": [BINDING_ID]},
                "ref": None,
            }
        )

    def drop_connections(self) -> None:
        """Cut every client's socket without a close frame, as a network fault."""
        for connection in list(self._connections):
            connection.transport.abort()

    async def _send_all(self, message: dict[str, Any]) -> None:
        for connection in list(self._connections):
            await connection.send(json.dumps(message))

    async def _handle(self, connection: ServerConnection) -> None:
        self._connections.add(connection)
        try:
            async for raw in connection:
                await self._answer(connection, json.loads(raw))
        except Exception:  # noqa: S110 (a dropped client ends its handler)
            pass
        finally:
            self._connections.discard(connection)

    async def _answer(self, connection: ServerConnection, message: Any) -> None:
        event, topic, ref = message["event"], message["topic"], message["ref"]
        response: dict[str, Any] = {}
        if event == "phx_join":
            bindings = message["payload"]["config"]["postgres_changes"]
            response = {"postgres_changes": [{**b, "id": BINDING_ID} for b in bindings]}
            self.topic = topic
            self.joins += 1
        reply = {
            "event": "phx_reply",
            "topic": topic,
            "payload": {"status": "ok", "response": response},
            "ref": ref,
        }
        await connection.send(json.dumps(reply))
        if event == "phx_join":
            system = {
                "channel": topic,
                "extension": "postgres_changes",
                "message": "Subscribed to PostgreSQL",
                "status": "ok",
            }
            await connection.send(
                json.dumps(
                    {"event": "system", "topic": topic, "payload": system, "ref": None}
                )
            )
