"""The pub/sub channels every layer shares, and how their messages are encoded.

A root task's events go on `events.<root id>` as a JSON list of events, in
`seq` order; control messages between processes (cancel, capacity freed, rules
reloaded) go on `control` as one JSON object each.
"""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter

from devteam.domain.events import Event

CONTROL_CHANNEL = "control"
"""Messages between processes: `{"type": "cancel" | "capacity" | "reload_rules", ...}`."""


def events_channel(root_id: UUID) -> str:
    return f"events.{root_id}"


_EVENTS = TypeAdapter(list[Event])


def encode_events(events: list[Event]) -> bytes:
    return _EVENTS.dump_json(events)


def decode_events(raw: bytes) -> list[Event]:
    return _EVENTS.validate_json(raw)


def encode_control(kind: str, **data: Any) -> bytes:
    return json.dumps({"type": kind, **data}).encode()
