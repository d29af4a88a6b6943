"""Encode domain events as plain JSON with pydantic, and decode them back."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import TypeAdapter, ValidationError


@cache
def _adapter(event_class: type[Any]) -> TypeAdapter[Any]:
    return TypeAdapter(event_class)


class PydanticMapper(Mapper[Any]):
    """A mapper whose stored state is the event's fields as plain JSON.

    Datetimes are ISO 8601 strings and UUIDs their canonical strings, so SQL can
    read payloads directly. Decoding validates the fields with pydantic after
    upcasting older versions (upcast_vN_vN+1 static methods on the event class).
    A cipher or compressor, when configured, turns the JSON into bytes that the
    recorder keeps in the state column instead of the payload column.
    """

    def __init__(self, transcoder: Any = None, **kwargs: Any) -> None:
        super().__init__(transcoder or JSONTranscoder(), **kwargs)

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        event_class = type(domain_event)
        state = _adapter(event_class).dump_python(domain_event, mode="json")
        del state["originator_id"]
        originator_version = state.pop("originator_version")
        class_version = getattr(event_class, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        encoded = json.dumps(
            state, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
        if self.compressor:
            encoded = self.compressor.compress(encoded)
        if self.cipher:
            encoded = self.cipher.encrypt(encoded)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=originator_version,
            topic=get_topic(event_class),
            state=encoded,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        event_class = resolve_topic(stored_event.topic)
        try:
            state = self.decode_state(stored_event)
            upcast(event_class, state)
            state["originator_id"] = stored_event.originator_id
            state["originator_version"] = stored_event.originator_version
            event: DomainEventProtocol[Any] = _adapter(event_class).validate_python(
                state
            )
        except (ValueError, TypeError, ValidationError) as error:
            raise MapperDeserialisationError(
                f"cannot decode event {stored_event.topic} of "
                f"{stored_event.originator_id} version "
                f"{stored_event.originator_version}: {error}"
            ) from error
        return event

    def decode_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        decoded = json.loads(state)
        if not isinstance(decoded, dict):
            raise TypeError("event state is not a JSON object")
        return decoded


def upcast(event_class: type[Any], state: dict[str, Any]) -> None:
    """Bring state stored by an older version of event_class to the current one."""
    current = getattr(event_class, "class_version", 1)
    stored = state.pop("class_version", 1)
    if stored > current:
        raise ValueError(
            f"stored version {stored} of {event_class.__qualname__} is newer than "
            f"this code's version {current}"
        )
    while stored < current:
        getattr(event_class, f"upcast_v{stored}_v{stored + 1}")(state)
        stored += 1
