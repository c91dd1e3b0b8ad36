"""WebSocket frames written straight to the connection's transport, under uvicorn.

Through ASGI, every message a server sends is an `await send(...)` down the
middleware stack into uvicorn, which frames it and writes it to the socket. For
a fan-out of one event to a thousand subscribers that is a thousand trips
through the same layers with the same bytes. `devteam serve` runs uvicorn with
`FrameProtocol`, its sans-I/O WebSocket implementation plus one ASGI extension,
`devteam.websocket.frames`: a `FrameWriter` that writes frames the application
encoded once (`text_frame`) to the connection's transport, in the caller's
turn of the event loop, no task woken.

Frames are unmasked text frames, as a server sends them, never compressed (a
message without the RSV1 bit is allowed on a connection that negotiated
permessage-deflate, RFC 7692 section 6). Under another server the extension is
missing and the application sends through ASGI as usual.
"""

from __future__ import annotations

import struct
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

EXTENSION = "devteam.websocket.frames"
"""The ASGI scope extension holding the connection's `FrameWriter`."""

_TEXT = 0x81
"""FIN and the text opcode."""


def text_frame(text: str) -> bytes:
    """One complete, unmasked text frame carrying `text`."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _TEXT, size)
    elif size < 65536:
        header = struct.pack("!BBH", _TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT, 127, size)
    return header + payload


class FrameWriter:
    """Writes whole frames to one connection's transport, in order with uvicorn's own."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @property
    def open(self) -> bool:
        """The handshake is done and neither side has closed: frames may go out."""
        protocol = self._protocol
        return (
            protocol.handshake_complete
            and not protocol.close_sent
            and not protocol.disconnected
            and not protocol.transport.is_closing()
        )

    @property
    def writable(self) -> bool:
        """Open and below the transport's high-water mark: a write will not pile up."""
        protocol = self._protocol
        return (
            protocol.writable.is_set()
            and protocol.handshake_complete
            and not protocol.close_sent
            and not protocol.disconnected
            and not protocol.transport.is_closing()
        )

    async def drained(self) -> None:
        """Wait until the transport drops below its low-water mark (or the connection ends)."""
        await self._protocol.writable.wait()

    def send(self, frames: bytes) -> None:
        """Write encoded frames; the caller found the connection `writable` just now."""
        self._protocol.transport.write(frames)

    def write(self, frames: bytes) -> bool:
        """Write encoded frames; False when the connection is no longer open."""
        if not self.open:
            return False
        self._protocol.transport.write(frames)
        return True


class FrameProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` implementation, offering a `FrameWriter` in the scope."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][EXTENSION] = FrameWriter(self)
