"""The retry policy, after Temporal's: back-off, a maximum of attempts, errors not retried."""

from __future__ import annotations

from datetime import timedelta

from devteam.domain.enums import TaskStatus
from devteam.domain.errors import ErrorCode
from devteam.orchestration.rules.base import TaskRule, TransitionContext
from devteam.settings.team_leader import RetryConfig

S = TaskStatus

_NOT_A_FAILURE = frozenset({ErrorCode.LEASE_EXPIRED.value, ErrorCode.WORKER_STOPPED.value})


def backoff(config: RetryConfig, attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1`, after attempt `attempt` failed."""
    delay = config.initial_interval_s * config.backoff_coefficient ** (attempt - 1)
    return float(min(delay, config.maximum_interval_s))


class RetryFailedAttempts(TaskRule):
    """A failed attempt is tried again after a back-off, unless its error is not retryable
    or the attempts are used up.

    The retry goes `in_progress => delegated` with `attempt + 1`.
    """

    FROM = frozenset({S.IN_PROGRESS})
    TO = frozenset({S.FAILED})

    async def before_transition(self, ctx: TransitionContext) -> None:
        config = ctx.config.retry
        error = ctx.updates.get("error") or {}
        code = str(error.get("code", "agent_error"))
        attempt = ctx.task.attempt
        if code in config.non_retryable_error_codes:
            return
        if attempt >= config.maximum_attempts:
            return
        # An attempt whose worker died or stopped did not fail: retry it at once.
        wait = 0.0 if code in _NOT_A_FAILURE else backoff(config, attempt)
        not_before = ctx.now + timedelta(seconds=wait)
        self.rewrite(
            ctx,
            f"attempt {attempt} of {config.maximum_attempts} failed with {code}: "
            f"retrying in {wait:g}s",
            to=S.DELEGATED,
            attempt=attempt + 1,
            not_before=not_before if wait > 0 else None,
            error=None,
        )
        ctx.event_data.update(
            failed_attempt=attempt,
            error=error,
            retry_in_s=wait,
            not_before=not_before.isoformat(),
        )
