"""Each rule of the policy: where it applies, and what breaks without it.

Every scenario runs twice on a real store: with the full policy and with the
policy minus the rule under test; the observable outcome must differ exactly
as the rule promises. A rule that does nothing would fail here.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from devteam.domain.enums import AgentType, Phase, Role, TaskStatus
from devteam.domain.events import EventType
from devteam.domain.tasks import Budget, Usage
from devteam.domain.webhooks import Webhook, WebhookEvent
from devteam.orchestration.policy import default_policy
from devteam.orchestration.recovery import end_lost_attempt
from devteam.orchestration.rules.base import Decision, TaskRule
from devteam.orchestration.rules.budgets import AddUsageToParents, StopRootOverBudget
from devteam.orchestration.rules.instrumentation import (
    CountTransitions,
    DelegateReadyWork,
    EnqueueReadyWork,
    ManageLeases,
    RecordStatusEvent,
)
from devteam.orchestration.rules.lifecycle import (
    ALLOWED,
    AllowOnlyValidMoves,
    CancelIdleWorkAtOnce,
    CompleteParentWhenChildrenComplete,
    FailParentWhenChildFails,
    FinishCancellation,
    HonourCancellation,
    PropagateCancellation,
    StartParentWithFirstChild,
)
from devteam.orchestration.rules.planning import (
    EnforceComplexityBudget,
    RequireApproval,
    RouteByTaskType,
)
from devteam.orchestration.rules.retries import RetryFailedAttempts
from devteam.orchestration.rules.review import SendRequestedChangesBack
from devteam.orchestration.rules.scheduling import (
    LimitConcurrency,
    TimeOutQueueWait,
    WaitForDependencies,
    WaitForEarlierPhases,
    WaitForParentToRun,
    WaitForRetryBackoff,
)
from devteam.orchestration.rules.security import AuditWorkspaceTampering
from devteam.orchestration.rules.webhooks import QueueWebhookDelivery
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Store
from tests.factories import create_user
from tests.integration.orchestration.engine_env import EngineEnv, lease

S = TaskStatus
PAIRS = list(itertools.product(TaskStatus, TaskStatus))
PAIR_IDS = [f"{a} => {b}" for a, b in PAIRS]


@pytest.fixture
async def env(store: Store) -> EngineEnv:
    user = await create_user(store, role=Role.DEVELOPER)
    return EngineEnv(store, user)


# -- where each rule applies -----------------------------------------------------------


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS, ids=PAIR_IDS)
def test_the_state_machine(from_status: TaskStatus, to_status: TaskStatus) -> None:
    """Finished tasks never move; the rest move only along the documented edges."""
    allowed = to_status in ALLOWED[from_status]
    if from_status.is_terminal:
        assert not allowed
    expected_edges = {
        "in_progress => delegated",  # a retry
        "pending => planning",
        "planning => awaiting_approval",
        "awaiting_approval => delegated",
        "delegated => in_progress",
        "in_progress => completed",
        "cancelling => cancelled",
    }
    if f"{from_status} => {to_status}" in expected_edges:
        assert allowed


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS, ids=PAIR_IDS)
def test_each_rule_guards_its_declared_transitions(
    from_status: TaskStatus, to_status: TaskStatus
) -> None:
    policy = default_policy()
    applying = policy.for_transition(from_status, to_status)
    for rule in policy.rules:
        declared = from_status in rule.FROM and to_status in rule.TO
        assert (rule in applying) == declared, rule.name
    # Instrumentation comes last, so it sees the final decision.
    names = [r.name for r in policy.rules]
    assert names[-4:] == [
        "ManageLeases",
        "EnqueueReadyWork",
        "RecordStatusEvent",
        "CountTransitions",
    ]


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS, ids=PAIR_IDS)
async def test_valid_moves_decision_table(
    env: EngineEnv, from_status: TaskStatus, to_status: TaskStatus
) -> None:
    """What the engine does with each proposed move, with only the state machine rule."""
    from devteam.orchestration.rules.base import Policy

    only = env.with_policy(Policy([AllowOnlyValidMoves()]))
    root, _ = await only.tree({"status": from_status})
    result = await only.move(root, to_status)
    assert result.accepted == (to_status in ALLOWED[from_status])
    assert (await only.get(root)).status == (to_status if result.accepted else from_status)


# -- what breaks without each rule -------------------------------------------------------

Scenario = Callable[[EngineEnv], Awaitable[Any]]


async def moving_a_finished_task(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.COMPLETED})
    return (await env.move(root, S.IN_PROGRESS)).status


async def finishing_after_cancellation(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.CANCELLING, **lease(env)})
    await env.move(root, S.COMPLETED, result={"x": 1})
    return (await env.get(root)).status


async def cancelling_idle_work(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.PENDING})
    return (await env.move(root, S.CANCELLING)).status


async def failing_an_attempt(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.IN_PROGRESS, **lease(env)})
    task = (await env.move(root, S.FAILED, error={"code": "agent_error", "message": "x"})).task
    return task.status, task.attempt


async def delegating_a_complex_task_whole(env: EngineEnv) -> Any:
    root, _ = await env.tree(
        {"status": S.PLANNING, "complexity": 9, "agent_type": AgentType.BACKEND}
    )
    return (await env.move(root, S.DELEGATED)).decision


async def delegating_without_an_agent(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.PLANNING, "task_type": "ui", "complexity": 2})
    return (await env.move(root, S.DELEGATED)).task.agent_type


async def delegating_a_plan_that_asks_for_approval(env: EngineEnv) -> Any:
    root, _ = await env.tree(
        {"status": S.PLANNING, "require_approval": True, "agent_type": AgentType.BACKEND}
    )
    return (await env.move(root, S.DELEGATED)).status


async def delegating_a_child_of_a_plan_awaiting_approval(env: EngineEnv) -> Any:
    _, (child,) = await env.tree({"status": S.AWAITING_APPROVAL}, {"key": "a"})
    return (await env.move(child, S.DELEGATED)).status


async def delegating_a_later_phase_early(env: EngineEnv) -> Any:
    _, (_, impl) = await env.tree(
        None,
        {"key": "research", "phase": Phase.RESEARCH, "agent_type": AgentType.RESEARCH},
        {"key": "impl", "phase": Phase.IMPLEMENTATION},
    )
    return (await env.move(impl, S.DELEGATED)).status


async def delegating_before_a_dependency(env: EngineEnv) -> Any:
    _, (_, second) = await env.tree(None, {"key": "first"}, {"key": "second", "deps": ["first"]})
    return (await env.move(second, S.DELEGATED)).status


async def starting_after_a_long_queue_wait(env: EngineEnv) -> Any:
    env.config = TeamLeaderConfig.model_validate({"timeouts": {"queue_wait_s": 60}})
    root, _ = await env.tree(
        {"status": S.DELEGATED, "queued_at": env.clock.now() - timedelta(seconds=120)}
    )
    return (await env.move(root, S.IN_PROGRESS, **lease(env))).status


async def starting_during_back_off(env: EngineEnv) -> Any:
    root, _ = await env.tree(
        {"status": S.DELEGATED, "not_before": env.clock.now() + timedelta(seconds=10)}
    )
    return (await env.move(root, S.IN_PROGRESS, **lease(env))).status


async def starting_over_the_global_limit(env: EngineEnv) -> Any:
    env.config = TeamLeaderConfig.model_validate({"concurrency": {"global": 1}})
    await env.tree({"status": S.IN_PROGRESS, **lease(env)})
    second, _ = await env.tree({"status": S.DELEGATED})
    return (await env.move(second, S.IN_PROGRESS, **lease(env))).status


async def completing_a_child_that_used_tokens(env: EngineEnv) -> Any:
    root, (child,) = await env.tree(None, {"key": "a", "status": S.IN_PROGRESS, **lease(env)})
    await env.move(
        child, S.COMPLETED, result={}, usage_delta=Usage(input_tokens=70, output_tokens=30)
    )
    return (await env.get(root)).usage.total_tokens


async def going_over_the_token_budget(env: EngineEnv) -> Any:
    root, (child, _) = await env.tree(
        {"budget": Budget(max_tokens=50)},
        {"key": "a", "status": S.IN_PROGRESS, **lease(env)},
        {"key": "b", "status": S.DELEGATED},
    )
    await env.move(child, S.COMPLETED, result={}, usage_delta=Usage(input_tokens=80))
    root = await env.get(root)
    return root.status, root.error.code if root.error else None


async def cancelling_a_parent(env: EngineEnv) -> Any:
    root, children = await env.tree(
        None, {"key": "a", "status": S.DELEGATED}, {"key": "b", "status": S.PENDING}
    )
    await env.move(root, S.CANCELLING)
    return sorted([str((await env.get(c)).status) for c in children])


async def starting_the_first_child(env: EngineEnv) -> Any:
    root, (child,) = await env.tree(None, {"key": "a", "status": S.DELEGATED})
    await env.move(child, S.IN_PROGRESS, **lease(env))
    return (await env.get(root)).status


async def completing_the_last_child(env: EngineEnv) -> Any:
    root, (child,) = await env.tree(
        {"status": S.IN_PROGRESS}, {"key": "a", "status": S.IN_PROGRESS, **lease(env)}
    )
    await env.move(child, S.COMPLETED, result={"done": True})
    return (await env.get(root)).status


async def a_review_requesting_changes(env: EngineEnv) -> Any:
    change = {"output_type": "CodeChange", "output": {"branch": "devteam/a", "base_commit": "0"}}
    root, (_, review) = await env.tree(
        {"status": S.IN_PROGRESS},
        {"key": "a", "status": S.COMPLETED, "result": change},
        {"key": "review", "status": S.IN_PROGRESS, "agent_type": AgentType.REVIEWER,
         "phase": Phase.REVIEW, "deps": ["a"], **lease(env)},
    )  # fmt: skip
    verdict = {"verdict": "request_changes", "summary": "no", "findings": []}
    await env.move(review, S.COMPLETED, result={"output_type": "Review", "output": verdict})
    async with env.store.read() as tx:
        children = await tx.tasks.children(root.id)
    return (await env.get(root)).status, [c.key for c in children]


async def failing_a_child_for_good(env: EngineEnv) -> Any:
    root, (child, sibling) = await env.tree(
        {"status": S.IN_PROGRESS},
        {"key": "a", "status": S.IN_PROGRESS, **lease(env)},
        {"key": "b", "status": S.PENDING},
    )
    await env.move(child, S.FAILED, error={"code": "validation_error", "message": "bad"})
    return (await env.get(root)).status, (await env.get(sibling)).status


async def the_last_child_stopping(env: EngineEnv) -> Any:
    root, (child,) = await env.tree(
        {"status": S.CANCELLING}, {"key": "a", "status": S.CANCELLING, **lease(env)}
    )
    await env.move(child, S.CANCELLED)
    return (await env.get(root)).status


async def completing_a_dependency(env: EngineEnv) -> Any:
    _, (first, second) = await env.tree(
        {"status": S.IN_PROGRESS},
        {"key": "first", "status": S.IN_PROGRESS, **lease(env)},
        {"key": "second", "deps": ["first"]},
    )
    await env.move(first, S.COMPLETED, result={})
    return (await env.get(second)).status


async def finishing_a_leased_attempt(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.IN_PROGRESS, **lease(env)})
    return (await env.move(root, S.COMPLETED, result={})).task.lease_owner


async def delegating_ready_work(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.PLANNING, "agent_type": AgentType.BACKEND})
    await env.move(root, S.DELEGATED)
    return await env.queued()


async def failing_on_a_tampered_worktree(env: EngineEnv) -> Any:
    root, _ = await env.tree(
        {"status": S.IN_PROGRESS, "agent_type": AgentType.BACKEND, **lease(env)}
    )
    await env.move(
        root, S.FAILED, error={"code": "workspace_tampered", "message": ".git was changed"}
    )
    async with env.store.read() as tx:
        entries = await tx.audit.list(action="workspace.tampered", limit=10)
    return [(e.actor, e.outcome.value) for e in entries if e.resource_id == str(root.id)]


async def any_status_change(env: EngineEnv) -> Any:
    root, _ = await env.tree({"status": S.DELEGATED})
    await env.move(root, S.IN_PROGRESS, **lease(env))
    return [e.type for e in await env.events(root) if e.type != EventType.RULE_DECISION]


async def counting_a_transition(env: EngineEnv) -> Any:
    labels = {"from_status": "delegated", "to_status": "cancelled"}
    before = REGISTRY.get_sample_value("devteam_task_transitions_total", labels) or 0.0
    root, _ = await env.tree({"status": S.DELEGATED})
    await env.move(root, S.CANCELLED)
    after = REGISTRY.get_sample_value("devteam_task_transitions_total", labels) or 0.0
    return after - before


async def finishing_a_task_with_a_webhook(env: EngineEnv) -> Any:
    hook = Webhook(url="https://hooks.example.com/devteam", events=[WebhookEvent.COMPLETED])
    root, _ = await env.tree({"status": S.IN_PROGRESS, **lease(env), "webhook": hook})
    await env.move(root, S.COMPLETED, result={"x": 1})
    async with env.store.read() as tx:
        deliveries = await tx.webhooks.for_task(root.id)
    return [(d.event.value, d.status.value) for d in deliveries]


WITHOUT: list[tuple[type[TaskRule], Scenario, Any, Any]] = [
    (AllowOnlyValidMoves, moving_a_finished_task, S.COMPLETED, S.IN_PROGRESS),
    (HonourCancellation, finishing_after_cancellation, S.CANCELLED, S.CANCELLING),
    (CancelIdleWorkAtOnce, cancelling_idle_work, S.CANCELLED, S.CANCELLING),
    (RetryFailedAttempts, failing_an_attempt, (S.DELEGATED, 2), (S.FAILED, 1)),
    (EnforceComplexityBudget, delegating_a_complex_task_whole, Decision.REJECT, Decision.ACCEPT),
    (RouteByTaskType, delegating_without_an_agent, AgentType.FRONTEND, None),
    (RequireApproval, delegating_a_plan_that_asks_for_approval, S.AWAITING_APPROVAL, S.DELEGATED),
    (WaitForParentToRun, delegating_a_child_of_a_plan_awaiting_approval, S.PENDING, S.DELEGATED),
    (WaitForEarlierPhases, delegating_a_later_phase_early, S.PENDING, S.DELEGATED),
    (WaitForDependencies, delegating_before_a_dependency, S.PENDING, S.DELEGATED),
    (TimeOutQueueWait, starting_after_a_long_queue_wait, S.FAILED, S.IN_PROGRESS),
    (WaitForRetryBackoff, starting_during_back_off, S.DELEGATED, S.IN_PROGRESS),
    (LimitConcurrency, starting_over_the_global_limit, S.DELEGATED, S.IN_PROGRESS),
    (AddUsageToParents, completing_a_child_that_used_tokens, 100, 0),
    (
        StopRootOverBudget,
        going_over_the_token_budget,
        (S.FAILED, "budget_exceeded"),
        (S.DELEGATED, None),
    ),
    (
        PropagateCancellation,
        cancelling_a_parent,
        ["cancelled", "cancelled"],
        ["delegated", "pending"],
    ),
    (StartParentWithFirstChild, starting_the_first_child, S.IN_PROGRESS, S.DELEGATED),
    (
        SendRequestedChangesBack,
        a_review_requesting_changes,
        (S.IN_PROGRESS, ["a", "review", "a-r2", "review-r2"]),
        (S.COMPLETED, ["a", "review"]),
    ),
    (CompleteParentWhenChildrenComplete, completing_the_last_child, S.COMPLETED, S.IN_PROGRESS),
    (
        FailParentWhenChildFails,
        failing_a_child_for_good,
        (S.FAILED, S.CANCELLED),
        (S.IN_PROGRESS, S.PENDING),
    ),
    (FinishCancellation, the_last_child_stopping, S.CANCELLED, S.CANCELLING),
    (DelegateReadyWork, completing_a_dependency, S.DELEGATED, S.PENDING),
    (ManageLeases, finishing_a_leased_attempt, None, "w1"),
    (EnqueueReadyWork, delegating_ready_work, 1, 0),
    (RecordStatusEvent, any_status_change, [EventType.TASK_STARTED], []),
    (CountTransitions, counting_a_transition, 1.0, 0.0),
    (AuditWorkspaceTampering, failing_on_a_tampered_worktree, [("devteam", "denied")], []),
    (QueueWebhookDelivery, finishing_a_task_with_a_webhook, [("completed", "pending")], []),
]


def test_every_rule_of_the_policy_has_a_scenario() -> None:
    covered = {rule for rule, *_ in WITHOUT}
    assert covered == {type(rule) for rule in default_policy().rules}


@pytest.mark.parametrize(
    ("rule", "scenario", "with_rule", "without_rule"),
    WITHOUT,
    ids=[rule.__name__ for rule, *_ in WITHOUT],
)
async def test_the_outcome_changes_without_the_rule(
    env: EngineEnv,
    rule: type[TaskRule],
    scenario: Scenario,
    with_rule: Any,
    without_rule: Any,
) -> None:
    assert await scenario(env) == with_rule
    assert await scenario(env.with_policy(default_policy().without(rule))) == without_rule


# -- decisions are explained ---------------------------------------------------------------


async def test_decisions_that_change_an_outcome_are_recorded(env: EngineEnv) -> None:
    root, (_, second) = await env.tree(None, {"key": "first"}, {"key": "second", "deps": ["first"]})
    await env.move(second, S.DELEGATED)
    await env.move(second, S.DELEGATED)  # the same delay again is not repeated
    decisions = [e for e in await env.events(root) if e.type == EventType.RULE_DECISION]
    assert len(decisions) == 1
    (decision,) = decisions
    assert decision.subtask_id == second.id
    assert decision.data == {
        "rule": "WaitForDependencies",
        "decision": "delay",
        "reason": "waiting for 1 dependencies: first",
        "transition": "pending => delegated",
    }


async def test_a_rewrite_is_recorded_with_its_reason(env: EngineEnv) -> None:
    root, _ = await env.tree({"status": S.IN_PROGRESS, **lease(env)})
    await env.move(root, S.FAILED, error={"code": "timeout", "message": "slow"})
    events = await env.events(root)
    (decision,) = [e for e in events if e.type == EventType.RULE_DECISION]
    assert decision.data["rule"] == "RetryFailedAttempts"
    assert decision.data["decision"] == "rewrite"
    assert "attempt 1 of 3 failed with timeout: retrying in 1s" in decision.data["reason"]
    retrying = events[-1]
    assert retrying.type == EventType.TASK_RETRYING
    assert retrying.data["error"] == {"code": "timeout", "message": "slow"}
    assert retrying.data["retry_in_s"] == 1.0


async def test_an_expired_lease_is_taken_over_once(env: EngineEnv) -> None:
    """Sweepers of several processes (and a worker handed the dead one's message)
    may all find the same expired lease; only the first take-over counts."""
    root, (child,) = await env.tree(
        {"status": S.DELEGATED}, {"key": "work", "status": S.IN_PROGRESS, **lease(env, -1)}
    )
    first = await end_lost_attempt(env.engine, child)
    again = await end_lost_attempt(env.engine, child)  # the same stale snapshot
    assert first.accepted and first.task.status == S.DELEGATED and first.task.attempt == 2
    assert not again.accepted
    # Running again elsewhere, under a new lease: a stale take-over leaves it alone.
    taken = {**lease(env), "lease_owner": "w2"}
    running = (await env.move(first.task, S.IN_PROGRESS, **taken)).task
    late = await end_lost_attempt(env.engine, child)
    assert not late.accepted
    assert (await env.get(running)).lease_owner == "w2"
    retries = [e for e in await env.events(root) if e.type == EventType.TASK_RETRYING]
    assert len(retries) == 1
