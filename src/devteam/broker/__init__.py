"""Broker: work queue, pub/sub, cache and rate-limit storage (memory or Redis)."""

from devteam.broker.protocol import (
    Broker,
    Cache,
    PubSub,
    QueueDepth,
    QueueMessage,
    Subscription,
    WorkQueue,
)

__all__ = [
    "Broker",
    "Cache",
    "PubSub",
    "QueueDepth",
    "QueueMessage",
    "Subscription",
    "WorkQueue",
]
