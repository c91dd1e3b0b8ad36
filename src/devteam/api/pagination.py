"""Opaque cursors for `{"items": [...], "next_cursor"}` pages.

A cursor is the position after the last item of a page (e.g. `{"before_id": 42}`),
as base64url JSON. Clients pass it back unchanged; a cursor that was not made here
is a `validation_error` on the `cursor` parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from devteam.api.validation import loads_strict
from devteam.domain.errors import ValidationFailed

MAX_POSITION = 2**63 - 1
"""Numbers in a cursor fit a 64-bit column."""


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, expected: dict[str, type]) -> dict[str, Any]:
    """The position in `cursor`, whose keys and value types must be `expected`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = loads_strict(raw, root="cursor")
    except (binascii.Error, ValueError):
        raise _invalid() from None
    if not isinstance(position, dict) or set(position) != set(expected):
        raise _invalid()
    for key, kind in expected.items():
        value = position[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _invalid()
        if isinstance(value, int) and not 0 <= value <= MAX_POSITION:
            raise _invalid()
    return position


def _invalid() -> ValidationFailed:
    message = "not a cursor from a previous page"
    return ValidationFailed(
        f"cursor: {message}",
        details=[
            {
                "loc": ["query", "cursor"],
                "field": "cursor",
                "message": message,
                "type": "value_error",
            }
        ],
    )
