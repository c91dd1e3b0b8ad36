"""Rate limits: moving windows counted in the broker's storage (Redis or in-process).

With Redis, every process of a deployment counts in the same windows, so a limit
holds however many API replicas there are. Each scope has its own limits from
config/security.yaml (`rate_limits`); a scope may have several ("10/second;500/hour"),
and a request must fit in all of them.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from enum import StrEnum

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter

from devteam.domain.errors import RateLimited
from devteam.observability.metrics import RATE_LIMIT_REJECTIONS
from devteam.settings.security import RateLimitsConfig


class RateLimitScope(StrEnum):
    API = "api"
    """Every authenticated API request, per user."""
    LOGIN_IP = "login_ip"
    """Login attempts, per client IP."""
    LOGIN_USERNAME = "login_username"
    """Login attempts, per username tried."""
    WS_CONNECT = "ws_connect"
    """WebSocket connections opened, per user."""


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """Where a caller stands in the tightest of a scope's windows."""

    limit: int
    remaining: int
    reset_after: int
    """Seconds until the window has room again (the oldest counted request leaves it)."""
    window_s: int

    def headers(self) -> dict[str, str]:
        """`RateLimit-*` headers (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }


class RateLimiter:
    def __init__(self, storage: Storage, config: RateLimitsConfig) -> None:
        self._strategy = MovingWindowRateLimiter(storage)
        self._limits: dict[RateLimitScope, list[RateLimitItem]] = {
            RateLimitScope.API: parse_many(config.api_per_user),
            RateLimitScope.LOGIN_IP: parse_many(config.login_per_ip),
            RateLimitScope.LOGIN_USERNAME: parse_many(config.login_per_username),
            RateLimitScope.WS_CONNECT: parse_many(config.ws_connect_per_user),
        }

    async def hit(self, scope: RateLimitScope, key: str) -> RateLimitState:
        """Count one request of `key` in `scope`.

        Returns the state of the tightest window; over a limit raises `RateLimited`
        (429) carrying `Retry-After` and the `RateLimit-*` headers, and counts it in
        `devteam_rate_limit_rejections_total`.
        """
        # Keys may be user input (usernames): hash them to a bounded, inert form.
        identifier = hashlib.sha256(key.encode()).hexdigest()[:32]
        tightest: RateLimitState | None = None
        for item in self._limits[scope]:
            allowed = await self._strategy.hit(item, scope.value, identifier)
            stats = await self._strategy.get_window_stats(item, scope.value, identifier)
            state = RateLimitState(
                limit=item.amount,
                remaining=max(0, stats.remaining),
                reset_after=max(0, math.ceil(stats.reset_time - time.time())),
                window_s=item.get_expiry(),
            )
            if not allowed:
                RATE_LIMIT_REJECTIONS.labels(scope=scope.value).inc()
                headers = {"Retry-After": str(max(1, state.reset_after)), **state.headers()}
                raise RateLimited(
                    f"too many requests: at most {item.amount} per {_window(item)}; "
                    f"retry in {headers['Retry-After']} s",
                    headers=headers,
                )
            if tightest is None or state.remaining < tightest.remaining:
                tightest = state
        assert tightest is not None, "parse_many returns at least one limit"
        return tightest


def _window(item: RateLimitItem) -> str:
    granularity = item.GRANULARITY.name
    return granularity if item.multiples == 1 else f"{item.multiples} {granularity}s"
