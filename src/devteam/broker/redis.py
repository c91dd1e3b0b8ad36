"""The Redis broker: Streams consumer groups, pub/sub, cache and rate limits.

The work queue is a stream read through one consumer group. Messages a consumer
received stay in the group's pending list until acknowledged; when one sits there
longer than the visibility timeout (its consumer died or stopped heartbeating),
XAUTOCLAIM hands it to the next consumer that asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from limits.aio.storage import RedisStorage, Storage
from redis.asyncio.client import PubSub as RedisPubSubConnection
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from devteam.broker import keys
from devteam.broker.protocol import MessageHandler, QueueDepth, QueueMessage
from devteam.observability.logging import get_logger

log = get_logger(__name__)

# Add each of ARGV to the stream KEYS[1] as a new entry; answer their ids in one string
# (one reply to read, however many entries).
_ADD = """
local ids = {}
for i, payload in ipairs(ARGV) do
  ids[i] = redis.call('XADD', KEYS[1], '*', 'p', payload, 'n', '0')
end
return table.concat(ids, ' ')
"""

# Publish each (channel, message) pair of ARGV, in order: one command and one reply.
_PUBLISH = """
for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return 0
"""

# Take up to ARGV[3] new entries from the streams in KEYS, in order (priority first).
# When there are none, return the streams' last generated ids instead, to block on.
_CLAIM = """
local out = {}
local want = tonumber(ARGV[3])
for _, key in ipairs(KEYS) do
  if want <= 0 then break end
  local res = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want,
                         'STREAMS', key, '>')
  if res and res[1] then
    for _, entry in ipairs(res[1][2]) do
      table.insert(out, {key, entry[1], entry[2], 1})
      want = want - 1
    end
  end
end
if #out > 0 then return {1, out} end
local ids = {}
for _, key in ipairs(KEYS) do
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then table.insert(ids, info[i + 1]) end
  end
end
return {0, ids}
"""

# Hand entries idle longer than ARGV[3] ms (their consumer died) to consumer ARGV[2].
_RECLAIM = """
local out = {}
local want = tonumber(ARGV[4])
for _, key in ipairs(KEYS) do
  if want <= 0 then break end
  local res = redis.call('XAUTOCLAIM', key, ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', want)
  for _, entry in ipairs(res[2]) do
    local p = redis.call('XPENDING', key, ARGV[1], entry[1], entry[1], 1)
    local times = 1
    if p[1] then times = p[1][4] end
    table.insert(out, {key, entry[1], entry[2], times})
    want = want - 1
  end
  if res[3] and #res[3] > 0 then
    redis.call('XACK', key, ARGV[1], unpack(res[3]))
  end
end
return out
"""

# Restart the idle time of the entries this consumer still owns; return those ids.
_EXTEND = """
local held = {}
for i, id in ipairs(ARGV) do
  if i > 1 then
    local p = redis.call('XPENDING', KEYS[1], KEYS[2], id, id, 1)
    if p[1] and p[1][2] == ARGV[1] then
      redis.call('XCLAIM', KEYS[1], KEYS[2], ARGV[1], 0, id, 'JUSTID')
      table.insert(held, id)
    end
  end
end
return held
"""

# Put entries this consumer owns back at the end of the stream, counting deliveries.
_RELEASE = """
local n = 0
for i, id in ipairs(ARGV) do
  if i > 1 then
    local p = redis.call('XPENDING', KEYS[1], KEYS[2], id, id, 1)
    if p[1] and p[1][2] == ARGV[1] then
      local entry = redis.call('XRANGE', KEYS[1], id, id)
      if entry[1] then
        local fields = entry[1][2]
        local payload, prior = nil, 0
        for j = 1, #fields, 2 do
          if fields[j] == 'p' then payload = fields[j + 1] end
          if fields[j] == 'n' then prior = tonumber(fields[j + 1]) end
        end
        redis.call('XADD', KEYS[1], '*', 'p', payload, 'n', tostring(prior + p[1][4]))
        n = n + 1
      end
      redis.call('XACK', KEYS[1], KEYS[2], id)
      redis.call('XDEL', KEYS[1], id)
    end
  end
end
return n
"""


def broker_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says Redis could not be reached or did not answer in time."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError))


def _fields(raw: Any) -> dict[bytes, bytes]:
    if isinstance(raw, dict):
        return raw
    it = iter(raw)
    return dict(zip(it, it, strict=True))


class RedisWorkQueue:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._groups: set[str] = set()
        self._last_reclaim: dict[tuple[str, ...], float] = {}
        self._add = client.register_script(_ADD)
        self._claim = client.register_script(_CLAIM)
        self._reclaim = client.register_script(_RECLAIM)
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    def _key(self, queue: str) -> str:
        return keys.queue(self._prefix, queue)

    def _name(self, key: str) -> str:
        return key.removeprefix(keys.queue(self._prefix, ""))

    async def _ensure_groups(self, stream_keys: Sequence[str]) -> None:
        for key in stream_keys:
            if key in self._groups:
                continue
            try:
                await self._client.xgroup_create(key, keys.CONSUMER_GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(key)

    async def enqueue(self, queue: str, payloads: Sequence[bytes]) -> list[str]:
        key = self._key(queue)
        await self._ensure_groups([key])
        if not payloads:
            return []
        ids: bytes = await self._add(keys=[key], args=list(payloads))
        return ids.decode().split(" ")

    def _messages(self, rows: Any) -> list[QueueMessage]:
        messages = []
        for key, mid, raw, times in rows:
            fields = _fields(raw)
            prior = int(fields.get(b"n", b"0"))
            name = self._name(key.decode() if isinstance(key, bytes) else key)
            messages.append(QueueMessage(name, mid.decode(), fields[b"p"], prior + int(times)))
        return messages

    async def receive(
        self,
        queues: Sequence[str],
        consumer: str,
        *,
        max_messages: int = 1,
        wait: float = 1.0,
        visibility_timeout: float = 30.0,
    ) -> list[QueueMessage]:
        stream_keys = [self._key(q) for q in queues]
        await self._ensure_groups(stream_keys)
        group_key = tuple(stream_keys)
        give_up = time.monotonic() + wait
        while True:
            # Look for timed-out messages at most a few times per visibility timeout.
            now = time.monotonic()
            if now - self._last_reclaim.get(group_key, 0.0) >= min(1.0, visibility_timeout / 4):
                self._last_reclaim[group_key] = now
                rows = await self._reclaim(
                    keys=stream_keys,
                    args=[
                        keys.CONSUMER_GROUP,
                        consumer,
                        int(visibility_timeout * 1000),
                        max_messages,
                    ],
                )
                if rows:
                    return self._messages(rows)
            found, rows = await self._claim(
                keys=stream_keys, args=[keys.CONSUMER_GROUP, consumer, max_messages]
            )
            if found:
                return self._messages(rows)
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                return []
            # Sleep until a stream gets an entry after the ids seen, then claim again.
            block = max(int(min(remaining, 1.0) * 1000), 1)
            await self._client.xread(dict(zip(stream_keys, rows, strict=True)), block=block)

    async def ack(self, queue: str, message_ids: Sequence[str]) -> None:
        if not message_ids:
            return
        key = self._key(queue)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xack(key, keys.CONSUMER_GROUP, *message_ids)
            pipe.xdel(key, *message_ids)
            await pipe.execute()

    async def extend(self, queue: str, consumer: str, message_ids: Sequence[str]) -> list[str]:
        if not message_ids:
            return []
        held = await self._extend(
            keys=[self._key(queue), keys.CONSUMER_GROUP], args=[consumer, *message_ids]
        )
        return [h.decode() if isinstance(h, bytes) else str(h) for h in held]

    async def release(self, queue: str, consumer: str, message_ids: Sequence[str]) -> None:
        if message_ids:
            await self._release(
                keys=[self._key(queue), keys.CONSUMER_GROUP], args=[consumer, *message_ids]
            )

    async def depth(self, queue: str) -> QueueDepth:
        key = self._key(queue)
        await self._ensure_groups([key])
        groups: list[dict[str, Any]] = await self._client.xinfo_groups(key)
        for group in groups:
            if group["name"].decode() == keys.CONSUMER_GROUP:
                pending = int(group["pending"])
                lag = group.get("lag")
                ready = int(lag) if lag is not None else await self._client.xlen(key) - pending
                return QueueDepth(ready=max(ready, 0), in_flight=pending)
        return QueueDepth(ready=0, in_flight=0)


class _RedisSubscription:
    def __init__(self, pubsub: RedisPubSub, channel: str, handler: MessageHandler) -> None:
        self._pubsub = pubsub
        self.channel = channel
        self.handler = handler

    async def close(self) -> None:
        await self._pubsub._remove(self)


class RedisPubSub:
    """One Redis subscription per channel per process, fanned out to local handlers."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._conn: RedisPubSubConnection = client.pubsub()
        self._publish = client.register_script(_PUBLISH)
        self._handlers: dict[str, list[_RedisSubscription]] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._has_channels = asyncio.Event()

    def _channel(self, name: str) -> str:
        return keys.channel(self._prefix, name)

    async def publish(self, channel: str, message: bytes) -> None:
        await self._client.publish(self._channel(channel), message)

    async def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if len(messages) == 1:
            await self.publish(*messages[0])
            return
        if messages:
            pairs: list[str | bytes] = []
            for channel, message in messages:
                pairs += [self._channel(channel), message]
            await self._publish(args=pairs)

    async def subscribe(self, channel: str, handler: MessageHandler) -> _RedisSubscription:
        subscription = _RedisSubscription(self, channel, handler)
        full = self._channel(channel)
        async with self._lock:
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(), name="redis-pubsub-reader")
            self._handlers.setdefault(full, []).append(subscription)
            confirmation = self._confirmations.get(full)
            if confirmation is None:
                confirmation = asyncio.get_running_loop().create_future()
                self._confirmations[full] = confirmation
                await self._conn.subscribe(full)
                self._has_channels.set()
        # Wait until Redis confirms, so a publish after this returns is received.
        await asyncio.shield(confirmation)
        return subscription

    async def _remove(self, subscription: _RedisSubscription) -> None:
        full = self._channel(subscription.channel)
        async with self._lock:
            handlers = self._handlers.get(full, [])
            if subscription in handlers:
                handlers.remove(subscription)
            if not handlers and full in self._handlers:
                del self._handlers[full]
                self._confirmations.pop(full, None)
                await self._conn.unsubscribe(full)

    async def _read(self) -> None:
        while True:
            try:
                if not self._conn.subscribed:
                    self._has_channels.clear()
                    await self._has_channels.wait()
                message = await self._conn.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The connection broke: redis-py reconnects and resubscribes on the next read.
                log.warning("redis pubsub read failed; retrying", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if kind == "subscribe":
            confirmation = self._confirmations.get(channel)
            if confirmation is not None and not confirmation.done():
                confirmation.set_result(None)
        elif kind == "message":
            for subscription in tuple(self._handlers.get(channel, ())):
                try:
                    subscription.handler(message["data"])
                except Exception:
                    log.exception("pubsub handler failed", channel=channel)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._conn.aclose()  # type: ignore[no-untyped-call]


class RedisCache:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        return cast(bytes | None, await self._client.get(keys.cache(self._prefix, key)))

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._client.set(keys.cache(self._prefix, key), value, px=max(int(ttl * 1000), 1))

    async def delete(self, key: str) -> None:
        await self._client.delete(keys.cache(self._prefix, key))


@functools.cache
def _driver_info() -> DriverInfo:
    """What connections tell Redis about their client (CLIENT SETINFO), worked out once:
    left to itself, redis-py reads its package metadata again for every new connection."""
    return DriverInfo()


class RedisBroker:
    kind: Literal["memory", "redis"] = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "devteam",
        max_connections: int = 64,
        pool_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        # A burst of more concurrent commands than connections waits for one (up to
        # `pool_timeout`) instead of failing at once with MaxConnectionsError.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_timeout,
            driver_info=_driver_info(),
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closes it with the client
        self.queue = RedisWorkQueue(self.client, prefix)
        self.pubsub = RedisPubSub(self.client, prefix)
        self.cache = RedisCache(self.client, prefix)
        self._limits: Storage | None = None

    def rate_limit_storage(self) -> Storage:
        if self._limits is None:
            scheme, _, rest = self.url.partition("://")
            uri = f"async+redis+unix://{rest}" if scheme == "unix" else f"async+{self.url}"
            # Share our connection pool, so closing the broker closes these connections too.
            self._limits = RedisStorage(
                uri,
                implementation="redispy",
                key_prefix=keys.rate_limits(self.prefix),
                connection_pool=self.client.connection_pool,  # type: ignore[arg-type]
            )
        return self._limits

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.pubsub.close()
        await self.client.aclose()
