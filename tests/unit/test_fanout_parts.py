"""The fan-out's own parts: frames encoded once, and reads shared by followers."""

from __future__ import annotations

import asyncio

import pytest
from websockets.frames import Opcode
from websockets.protocol import OPEN, Protocol, Side

from devteam.api.hub import SharedReads
from devteam.api.wsframes import text_frame


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_text_frames_parse_as_one_whole_unmasked_message(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    client = Protocol(Side.CLIENT, state=OPEN)
    client.receive_data(text_frame(text) + text_frame("next"))
    frames = client.events_received()
    assert [(f.opcode, f.fin, f.data.decode()) for f in frames] == [
        (Opcode.TEXT, True, text),
        (Opcode.TEXT, True, "next"),
    ]
    assert client.parser_exc is None


async def test_callers_share_a_read_that_starts_after_they_asked() -> None:
    reads = SharedReads()
    started: list[int] = []
    release = asyncio.Event()

    async def query() -> int:
        started.append(len(started) + 1)
        await release.wait()
        return len(started)

    first = asyncio.create_task(reads.read("k", query))
    await asyncio.sleep(0)
    assert started == [1]
    # Asked while the first read runs: they must not get its result (it began
    # before they asked), and share one read that starts after it.
    later = [asyncio.create_task(reads.read("k", query)) for _ in range(5)]
    await asyncio.sleep(0)
    assert started == [1]
    release.set()
    assert await first == 1
    assert await asyncio.gather(*later) == [2] * 5
    assert started == [1, 2]


async def test_a_failed_shared_read_lets_each_caller_read_on_its_own() -> None:
    reads = SharedReads()
    calls = 0
    gate = asyncio.Event()

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await gate.wait()
            raise RuntimeError("the database went away")
        return "ok"

    leader = asyncio.create_task(reads.read("k", flaky))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(reads.read("k", flaky))
    await asyncio.sleep(0)
    gate.set()
    with pytest.raises(RuntimeError):
        await leader
    assert await joiner == "ok"
