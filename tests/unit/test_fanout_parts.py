"""The fan-out's own parts: frames encoded once, reads shared by followers, and the
hub's hand-over of live events in slices."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from uuid import UUID

import pytest
from websockets.frames import Opcode
from websockets.protocol import OPEN, Protocol, Side

from devteam.api.hub import FAN_OUT_SLICE, EventHub, Listening, SharedReads
from devteam.api.wsframes import text_frame
from devteam.broker.channels import encode_events, events_channel
from devteam.broker.memory import MemoryBroker
from devteam.domain.events import Event, EventType


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


def make_event(root_id: UUID, seq: int) -> Event:
    return Event(
        id=uuid.uuid4(),
        task_id=root_id,
        subtask_id=None,
        seq=seq,
        type=EventType.TASK_PROGRESS,
        data={"message": f"step {seq}"},
        ts=datetime.now(UTC),
    )


class Recorder:
    """A listener that keeps the batches it was handed."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, events: list[Event]) -> None:
        self.batches.append([e.seq for e in events])

    @property
    def seqs(self) -> list[int]:
        return [seq for batch in self.batches for seq in batch]


async def turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_batches_arriving_mid_hand_over_reach_every_listener_once_in_order() -> None:
    broker = MemoryBroker()
    hub = EventHub(broker)
    root = uuid.uuid4()
    channel = events_channel(root)
    early = [Recorder() for _ in range(3 * FAN_OUT_SLICE)]
    listenings: list[Listening] = [await hub.listen(root, r) for r in early]
    await broker.pubsub.publish(channel, encode_events([make_event(root, 1)]))
    await turns(3)  # the broker's turn, then two slices
    late = Recorder()  # listening from now on: gets what is published after this
    listenings.append(await hub.listen(root, late))
    await broker.pubsub.publish(channel, encode_events([make_event(root, 2)]))
    await turns(2)
    await broker.pubsub.publish(channel, encode_events([make_event(root, 3), make_event(root, 4)]))
    await turns(4 * len(early) // FAN_OUT_SLICE + 8)
    assert [r.seqs for r in early] == [[1, 2, 3, 4]] * len(early)
    assert late.seqs == [2, 3, 4]
    # The listeners not yet served when a batch came took it with the one on its way.
    assert any(len(r.batches) < 3 for r in early)
    for listening in listenings:
        await listening.close()
    await hub.close()


async def test_a_listener_that_leaves_mid_hand_over_gets_nothing_more() -> None:
    broker = MemoryBroker()
    hub = EventHub(broker)
    root = uuid.uuid4()
    recorders = [Recorder() for _ in range(4 * FAN_OUT_SLICE)]
    listenings = [await hub.listen(root, r) for r in recorders]
    await broker.pubsub.publish(events_channel(root), encode_events([make_event(root, 1)]))
    await turns(2)  # the broker's turn, then the first slice
    served = [r for r in recorders if r.batches]
    assert 0 < len(served) < len(recorders)
    leaving = recorders.index(next(r for r in recorders if not r.batches))
    await listenings[leaving].close()
    await turns(len(recorders) // FAN_OUT_SLICE + 2)
    assert recorders[leaving].batches == []
    assert sum(1 for r in recorders if r.seqs == [1]) == len(recorders) - 1
    for listening in listenings:
        await listening.close()
    await hub.close()
