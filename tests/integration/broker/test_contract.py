"""The broker contract, run against the in-process broker and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter

from devteam.broker.protocol import Broker, QueueDepth

VT = 0.5  # visibility timeout of these tests, in seconds


async def test_a_message_is_delivered_once_and_acknowledged(broker: Broker) -> None:
    ids = await broker.queue.enqueue("work", [b"one", b"two"])
    assert len(set(ids)) == 2
    first = await broker.queue.receive(["work"], "c1", max_messages=1, visibility_timeout=VT)
    second = await broker.queue.receive(["work"], "c2", max_messages=5, visibility_timeout=VT)
    assert [m.payload for m in first] == [b"one"]
    assert [m.payload for m in second] == [b"two"]
    assert first[0].deliveries == 1
    assert await broker.queue.depth("work") == QueueDepth(ready=0, in_flight=2)
    await broker.queue.ack("work", [first[0].id, second[0].id])
    assert await broker.queue.depth("work") == QueueDepth(ready=0, in_flight=0)
    # Nothing comes back after the visibility timeout once acknowledged.
    await asyncio.sleep(VT + 0.1)
    assert await broker.queue.receive(["work"], "c1", wait=0.2, visibility_timeout=VT) == []


async def test_receive_waits_for_a_message(broker: Broker) -> None:
    waiting = asyncio.create_task(
        broker.queue.receive(["work"], "c1", wait=5, visibility_timeout=VT)
    )
    await asyncio.sleep(0.1)
    await broker.queue.enqueue("work", [b"late"])
    messages = await asyncio.wait_for(waiting, 5)
    assert [m.payload for m in messages] == [b"late"]


async def test_receive_gives_up_after_wait(broker: Broker) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await broker.queue.receive(["empty"], "c1", wait=0.3, visibility_timeout=VT) == []
    assert 0.25 <= loop.time() - start < 3


async def test_unacknowledged_work_goes_to_another_consumer(broker: Broker) -> None:
    """A consumer takes a message and dies; another gets it after the visibility timeout."""
    await broker.queue.enqueue("work", [b"job"])
    (taken,) = await broker.queue.receive(["work"], "doomed", visibility_timeout=VT)
    # Before the timeout the message is invisible to others.
    assert await broker.queue.receive(["work"], "survivor", wait=0.1, visibility_timeout=VT) == []
    redelivered: list[bytes] = []
    deadline = asyncio.get_running_loop().time() + 5
    while not redelivered and asyncio.get_running_loop().time() < deadline:
        for message in await broker.queue.receive(
            ["work"], "survivor", wait=0.2, visibility_timeout=VT
        ):
            redelivered.append(message.payload)
            assert message.id == taken.id or message.payload == taken.payload
            assert message.deliveries == 2
            await broker.queue.ack("work", [message.id])
    assert redelivered == [b"job"]
    # The dead consumer no longer holds it.
    assert await broker.queue.extend("work", "doomed", [taken.id]) == []


async def test_extend_keeps_a_message_past_its_timeout(broker: Broker) -> None:
    await broker.queue.enqueue("work", [b"long job"])
    (message,) = await broker.queue.receive(["work"], "worker", visibility_timeout=VT)
    for _ in range(4):
        await asyncio.sleep(VT / 2)
        assert await broker.queue.extend("work", "worker", [message.id]) == [message.id]
        assert await broker.queue.receive(["work"], "thief", wait=0, visibility_timeout=VT) == []
    assert await broker.queue.extend("work", "someone-else", [message.id]) == []


async def test_release_hands_work_back_at_once(broker: Broker) -> None:
    await broker.queue.enqueue("work", [b"a", b"b"])
    taken = await broker.queue.receive(["work"], "stopping", max_messages=2, visibility_timeout=30)
    await broker.queue.release("work", "stopping", [m.id for m in taken])
    again = await broker.queue.receive(["work"], "other", max_messages=2, visibility_timeout=30)
    assert sorted(m.payload for m in again) == [b"a", b"b"]
    assert all(m.deliveries == 2 for m in again)
    # Only the holder can release.
    await broker.queue.release("work", "stranger", [m.id for m in again])
    assert await broker.queue.depth("work") == QueueDepth(ready=0, in_flight=2)


async def test_earlier_queues_come_first(broker: Broker) -> None:
    await broker.queue.enqueue("low", [b"low-1", b"low-2"])
    await broker.queue.enqueue("high", [b"high-1"])
    first = await broker.queue.receive(["high", "low"], "c", max_messages=2, visibility_timeout=VT)
    assert [(m.queue, m.payload) for m in first] == [("high", b"high-1"), ("low", b"low-1")]
    rest = await broker.queue.receive(["high", "low"], "c", max_messages=5, visibility_timeout=VT)
    assert [m.payload for m in rest] == [b"low-2"]
    await broker.queue.ack("high", [first[0].id])
    await broker.queue.ack("low", [first[1].id, rest[0].id])
    assert await broker.queue.depth("low") == QueueDepth(ready=0, in_flight=0)


async def test_a_waiting_receive_wakes_for_any_of_its_queues(broker: Broker) -> None:
    waiting = asyncio.create_task(
        broker.queue.receive(["high", "low"], "c", wait=5, visibility_timeout=VT)
    )
    await asyncio.sleep(0.1)
    await broker.queue.enqueue("low", [b"late"])
    messages = await asyncio.wait_for(waiting, 5)
    assert [(m.queue, m.payload) for m in messages] == [("low", b"late")]


async def test_many_consumers_share_the_work(broker: Broker) -> None:
    payloads = [str(i).encode() for i in range(60)]
    await broker.queue.enqueue("work", payloads)
    got: list[bytes] = []

    async def consume(name: str) -> None:
        while True:
            batch = await broker.queue.receive(
                ["work"], name, max_messages=4, wait=0.2, visibility_timeout=5
            )
            if not batch:
                return
            got.extend(m.payload for m in batch)
            await broker.queue.ack("work", [m.id for m in batch])

    await asyncio.gather(*(consume(f"c{i}") for i in range(4)))
    assert sorted(got) == sorted(payloads)


async def test_queues_are_independent(broker: Broker) -> None:
    await broker.queue.enqueue("a", [b"for a"])
    assert await broker.queue.receive(["b"], "c", wait=0.05, visibility_timeout=VT) == []
    assert [m.payload for m in await broker.queue.receive(["a"], "c", visibility_timeout=VT)] == [
        b"for a"
    ]


async def test_pubsub_fans_out_to_every_subscriber(broker: Broker) -> None:
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    arrived = asyncio.Event()

    def on_b(message: bytes) -> None:
        got_b.append(message)
        if len(got_b) == 2:
            arrived.set()

    sub_a = await broker.pubsub.subscribe("events", got_a.append)
    sub_b = await broker.pubsub.subscribe("events", on_b)
    await broker.pubsub.publish("events", b"1")
    await broker.pubsub.publish("other", b"not for us")
    await broker.pubsub.publish("events", b"2")
    await asyncio.wait_for(arrived.wait(), 5)
    assert got_b == [b"1", b"2"]
    assert got_a == [b"1", b"2"]

    await sub_a.close()
    await broker.pubsub.publish("events", b"3")
    await asyncio.wait_for(_until(lambda: len(got_b) == 3), 5)
    assert got_a == [b"1", b"2"]
    await sub_b.close()


async def test_publish_many_delivers_each_message_in_order(broker: Broker) -> None:
    got: dict[str, list[bytes]] = {"x": [], "y": []}
    done = asyncio.Event()

    def on(channel: str) -> Callable[[bytes], None]:
        def handle(message: bytes) -> None:
            got[channel].append(message)
            if sum(len(v) for v in got.values()) == 4:
                done.set()

        return handle

    await broker.pubsub.subscribe("x", on("x"))
    await broker.pubsub.subscribe("y", on("y"))
    await broker.pubsub.publish_many([("x", b"1"), ("y", b"a"), ("x", b"2"), ("y", b"b")])
    await broker.pubsub.publish_many([])
    await asyncio.wait_for(done.wait(), 5)
    assert got == {"x": [b"1", b"2"], "y": [b"a", b"b"]}


async def test_a_failing_handler_does_not_stop_the_others(broker: Broker) -> None:
    received: list[bytes] = []

    def broken(_: bytes) -> None:
        raise RuntimeError("handler bug")

    await broker.pubsub.subscribe("events", broken)
    await broker.pubsub.subscribe("events", received.append)
    await broker.pubsub.publish("events", b"x")
    await asyncio.wait_for(_until(lambda: received == [b"x"]), 5)


async def test_cache_expires(broker: Broker) -> None:
    await broker.cache.set("k", b"v", ttl=0.3)
    assert await broker.cache.get("k") == b"v"
    assert await broker.cache.get("missing") is None
    await asyncio.sleep(0.4)
    assert await broker.cache.get("k") is None
    await broker.cache.set("k2", b"v2", ttl=10)
    await broker.cache.delete("k2")
    assert await broker.cache.get("k2") is None


async def test_rate_limit_storage_counts_a_moving_window(broker: Broker) -> None:
    limiter = MovingWindowRateLimiter(broker.rate_limit_storage())
    limit = parse("3/minute")
    outcomes = [await limiter.hit(limit, "user", "ada") for _ in range(4)]
    assert outcomes == [True, True, True, False]
    assert await limiter.hit(limit, "user", "grace")


async def test_ping(broker: Broker) -> None:
    await broker.ping()


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_a_burst_beyond_the_redis_pool_waits_for_connections(
    redis_url: str, redis_prefix: str
) -> None:
    """More concurrent commands than pooled connections queue up instead of failing."""
    from devteam.broker.redis import RedisBroker

    broker = RedisBroker(redis_url, prefix=redis_prefix, max_connections=2)
    try:
        await asyncio.gather(*(broker.cache.set(f"k{i}", b"v", ttl=5) for i in range(50)))
        values = await asyncio.gather(*(broker.cache.get(f"k{i}") for i in range(50)))
        assert values == [b"v"] * 50
    finally:
        await broker.close()
