"""Pick the broker implementation the settings ask for."""

from __future__ import annotations

from devteam.broker.memory import MemoryBroker
from devteam.broker.protocol import Broker
from devteam.broker.redis import RedisBroker


def create_broker(redis_url: str | None, *, prefix: str = "devteam") -> Broker:
    """Redis when a URL is configured, the in-process broker otherwise."""
    if redis_url:
        return RedisBroker(redis_url, prefix=prefix)
    return MemoryBroker()
