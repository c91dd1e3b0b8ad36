"""Every Redis key and channel name, in one place.

Names are `<prefix>:<kind>:<name>`; the prefix (`DEVTEAM_REDIS_PREFIX`) lets
several deployments, or several test runs, share one Redis server.
"""

from __future__ import annotations

CONSUMER_GROUP = "workers"


def queue(prefix: str, name: str) -> str:
    """Stream holding a work queue."""
    return f"{prefix}:queue:{name}"


def channel(prefix: str, name: str) -> str:
    """Pub/sub channel."""
    return f"{prefix}:chan:{name}"


def cache(prefix: str, key: str) -> str:
    return f"{prefix}:cache:{key}"


def rate_limits(prefix: str) -> str:
    """Key prefix the `limits` library puts before its own keys."""
    return f"{prefix}:ratelimit"


SESSIONS_CHANNEL = "sessions"
"""Pub/sub channel (bare name) announcing revoked sessions and changed users, so
every process drops them from its session cache at once."""
