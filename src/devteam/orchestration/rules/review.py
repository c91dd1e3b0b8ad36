"""The review loop: a review that requests changes sends the work back to its coders.

A completed review is recorded as a `review.completed` event. When it requests
changes and rounds are left (`review.max_rounds` in team_leader.yaml), the work
goes back: for each change the review covered, a new coder subtask continues
that change on its branch (its briefing holds the review and the change so
far), and a new review follows it. Completed subtasks are never run again; each
round is subtasks of its own, so the history stays readable. The decision is a
`rule.decision` event with its reason.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from devteam.domain.enums import CODER_TYPES, AgentType, TaskStatus
from devteam.domain.events import EventType
from devteam.domain.tasks import REVIEW_ROUND_KEY, REVISION_KEY, Task, Usage
from devteam.orchestration.rules.base import Decision, TaskRule, TransitionContext

S = TaskStatus

KEY_CHARS = 64


def review_round(task: Task) -> int:
    value = task.metadata.get(REVIEW_ROUND_KEY, 1)
    return value if isinstance(value, int) and value >= 1 else 1


class SendRequestedChangesBack(TaskRule):
    """A review that requests changes sends the work back to its coders, at most
    `review.max_rounds` times; each round is a new coder subtask on the same branch and
    a new review after it.

    It runs before the parent completes from its children, so a parent never
    completes on a review that sent the work back.
    """

    FROM = frozenset({S.IN_PROGRESS})
    TO = frozenset({S.COMPLETED})

    async def after_transition(self, ctx: TransitionContext) -> None:
        review = ctx.updated or ctx.task
        if review.agent_type != AgentType.REVIEWER or review.parent_id is None:
            return
        output: dict[str, Any] = (review.result or {}).get("output") or {}
        verdict = output.get("verdict")
        if verdict is None:
            return  # not a review (an agent standing in for the reviewer, in tests)
        round_ = review_round(review)
        findings = output.get("findings") or []
        ctx.emit(EventType.REVIEW_COMPLETED, verdict=verdict, round=round_, findings=findings)
        if verdict != "request_changes":
            return
        max_rounds = ctx.config.review.max_rounds
        if round_ > max_rounds:
            self._decide(
                ctx,
                Decision.ACCEPT,
                f"review round {round_} requested changes and the {max_rounds} rounds of "
                "review.max_rounds are used up: the change stays unapproved and is not "
                "delivered",
            )
            return
        coders = self._reviewed_coders(ctx, review)
        if not coders:
            self._decide(
                ctx, Decision.ACCEPT, "the review requested changes, but reviewed no coder's work"
            )
            return
        revisions = [self._revision(ctx, coder, review, round_) for coder in coders]
        next_review = self._next_review(ctx, review, revisions, round_ + 1)
        new = [*revisions, next_review]
        # Created after every existing sibling, in this order: listings by creation time
        # show the rounds as they happened.
        latest = max(max(t.created_at for t in ctx.tree.tasks.values()), ctx.now)
        new = [
            t.model_copy(update={"created_at": latest + timedelta(microseconds=i + 1)})
            for i, t in enumerate(new)
        ]
        for task in new:
            ctx.create(task, reason=f"review round {round_} requested changes")
        self._decide(
            ctx,
            Decision.REWRITE,
            f"review round {round_} of {max_rounds} requested changes "
            f"({len(findings)} finding{'' if len(findings) == 1 else 's'}): the work goes back to "
            + ", ".join(f"{c.key} as {r.key}" for c, r in zip(coders, revisions, strict=True))
            + f", then review {next_review.key}",
            subtasks=[{"id": str(t.id), "key": t.key, "agent_type": t.agent_type} for t in new],
        )

    def _decide(self, ctx: TransitionContext, decision: Decision, reason: str, **data: Any) -> None:
        ctx.emit(
            EventType.RULE_DECISION,
            rule=self.name,
            decision=decision.value,
            reason=reason,
            transition=f"{ctx.from_status} => {ctx.proposed}",
            **data,
        )

    @staticmethod
    def _reviewed_coders(ctx: TransitionContext, review: Task) -> list[Task]:
        """The coder subtasks whose work the review covered (the latest of each branch)."""
        siblings = ctx.tree.children(review.parent_id) if review.parent_id else []
        coders = [ctx.tree.get(d) for d in review.depends_on if d in ctx.tree.tasks]
        coders = [c for c in coders if c.agent_type in CODER_TYPES]
        if coders:
            return coders
        # A review that names no dependency reviewed every change not revised since.
        revised = {d for s in siblings if s.metadata.get(REVISION_KEY) for d in s.depends_on}
        return [
            s
            for s in siblings
            if s.agent_type in CODER_TYPES and s.status == S.COMPLETED and s.id not in revised
        ]

    @staticmethod
    def _revision(ctx: TransitionContext, coder: Task, review: Task, round_: int) -> Task:
        change: dict[str, Any] = (coder.result or {}).get("output") or {}
        previous = coder.metadata.get(REVISION_KEY) or {}
        original = str(previous.get("of") or coder.key or coder.id)
        revision = int(change.get("revision") or 1) + 1
        metadata = {k: v for k, v in coder.metadata.items() if k != REVISION_KEY}
        metadata[REVISION_KEY] = {
            "of": original,
            "revision": revision,
            "branch": change.get("branch"),
            "base_commit": change.get("base_commit"),
            "review": review.key,
        }
        return _child(
            ctx,
            coder,
            key=_key(original, f"-r{round_ + 1}"),
            metadata=metadata,
            depends_on=[coder.id, review.id],
        )

    @staticmethod
    def _next_review(
        ctx: TransitionContext, review: Task, revisions: list[Task], round_: int
    ) -> Task:
        original = re.sub(r"-r\d+$", "", str(review.key or review.id))
        metadata = {**review.metadata, REVIEW_ROUND_KEY: round_}
        return _child(
            ctx,
            review,
            key=_key(original, f"-r{round_}"),
            metadata=metadata,
            depends_on=[r.id for r in revisions],
        )


def _key(base: str, suffix: str) -> str:
    return base[: KEY_CHARS - len(suffix)] + suffix


def _child(
    ctx: TransitionContext,
    like: Task,
    *,
    key: str,
    metadata: dict[str, Any],
    depends_on: list[uuid.UUID],
) -> Task:
    """A new pending sibling of `like`, doing the same kind of work."""
    return like.model_copy(
        update={
            "id": uuid.uuid4(),
            "key": key,
            "status": S.PENDING,
            "metadata": metadata,
            "depends_on": depends_on,
            "attempt": 1,
            "version": 0,
            "created_at": ctx.now,
            "updated_at": ctx.now,
            "started_at": None,
            "finished_at": None,
            "result": None,
            "error": None,
            "usage": Usage(),
            "lease_owner": None,
            "lease_expires_at": None,
            "not_before": None,
            "queued_at": None,
        }
    )
