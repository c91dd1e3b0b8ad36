"""The webhook outbox: a delivery is written in the transaction that ends a root task."""

from __future__ import annotations

import uuid

from devteam.domain.enums import TERMINAL_STATUSES
from devteam.domain.webhooks import WEBHOOK_EVENTS
from devteam.orchestration.rules.base import TaskRule, TransitionContext


class QueueWebhookDelivery(TaskRule):
    """A root task with a webhook that ends gets its delivery in the same transaction.

    So a delivery exists exactly when the ending was committed: none for a rolled-back
    transition, and none lost when the process stops right after the commit.
    """

    TO = TERMINAL_STATUSES

    async def after_transition(self, ctx: TransitionContext) -> None:
        task = ctx.updated
        if task is None or task.parent_id is not None or task.webhook is None:
            return
        event = WEBHOOK_EVENTS[task.status]
        if event in task.webhook.events:
            await ctx.tx.webhooks.add(uuid.uuid4(), task.id, event, task.webhook.url, ctx.now)
