"""The executor and the rules together: retries, timeouts, limits, approval, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from devteam.domain.enums import Role, TaskStatus
from devteam.domain.errors import Conflict
from devteam.domain.events import EventType
from devteam.domain.tasks import TaskRequest, Usage
from tests.factories import create_user
from tests.fakes.agents import Step
from tests.integration.orchestration.conftest import config, event_types

S = TaskStatus

TWO_STEPS = [
    {"key": "first", "agent_type": "backend", "task": "Do the first part", "complexity": 2},
    {
        "key": "second",
        "agent_type": "backend",
        "task": "Do the second part",
        "complexity": 2,
        "depends_on": ["first"],
    },
]


def plan(n: int, **step: Any) -> list[dict[str, Any]]:
    return [
        {"key": f"s{i}", "agent_type": "backend", "task": f"Do part number {i}", "complexity": 1}
        | step
        for i in range(n)
    ]


# -- retries --


async def test_a_failed_attempt_is_retried_after_a_back_off(
    make_harness: Callable[..., Any],
) -> None:
    async with make_harness() as h:
        h.script.on("root", Step(fail="agent_error"), Step(fail="timeout"), Step())
        root = await h.submit(agent_type="backend")
        done = await h.wait_for(root.id)
        events = await h.events(root.id)
    assert done.status == S.COMPLETED
    assert done.attempt == 3
    assert [c.spec.attempt for c in h.script.calls_for("root")] == [1, 2, 3]
    retries = [e for e in events if e.type == EventType.TASK_RETRYING]
    assert [r.data["error"]["code"] for r in retries] == ["agent_error", "timeout"]
    # Temporal-style back-off: initial 0.05 s, coefficient 2.
    assert [r.data["retry_in_s"] for r in retries] == [0.05, 0.1]


async def test_attempts_are_bounded(make_harness: Callable[..., Any]) -> None:
    async with make_harness(config(retry={"maximum_attempts": 2})) as h:
        h.script.on("root", Step(fail="agent_error"))
        root = await h.submit(agent_type="backend")
        done = await h.wait_for(root.id)
    assert done.status == S.FAILED
    assert done.attempt == 2
    assert done.error is not None
    assert done.error.code == "agent_error"


async def test_a_non_retryable_error_fails_at_once(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        h.script.on("root", Step(fail="llm_not_configured"))
        root = await h.submit(agent_type="research")
        done = await h.wait_for(root.id)
    assert done.status == S.FAILED
    assert done.attempt == 1
    assert len(h.script.calls_for("root")) == 1


async def test_an_unexpected_exception_is_an_agent_error(make_harness: Callable[..., Any]) -> None:
    async with make_harness(config(retry={"maximum_attempts": 1})) as h:
        h.script.on("root", Step(crash=True))
        root = await h.submit(agent_type="backend")
        done = await h.wait_for(root.id)
    assert done.error is not None
    assert done.error.code == "agent_error"
    assert "RuntimeError: root crashed" in done.error.message


# -- parents and children --


async def test_a_child_failing_for_good_fails_the_parent_and_stops_the_rest(
    make_harness: Callable[..., Any],
) -> None:
    steps = [
        {"key": "fails", "agent_type": "backend", "task": "This part fails", "complexity": 1},
        {"key": "slow", "agent_type": "frontend", "task": "This part runs long", "complexity": 1},
        {
            "key": "later",
            "agent_type": "backend",
            "task": "This part never starts",
            "complexity": 1,
            "depends_on": ["fails"],
        },
    ]
    async with make_harness() as h:
        h.script.on("fails", Step(sleep=0.1, fail="validation_error"))
        h.script.on("slow", Step(block=True))
        root = await h.submit(complexity=6, subtasks=steps)
        done = await h.wait_for(root.id)
        children = {c.key: c for c in await h.children(root.id)}
        later = await h.wait_for(children["slow"].id)
    assert done.status == S.FAILED
    assert done.error is not None
    assert done.error.code == "validation_error"
    assert "subtask 'fails' failed" in done.error.message
    assert children["later"].status == S.CANCELLED
    assert later.status == S.CANCELLED  # the running agent was stopped
    assert h.script.calls_for("later") == []
    assert done.result is not None
    assert done.result["subtasks"]["fails"]["error"]["code"] == "validation_error"


async def test_usage_adds_up_on_the_parent(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        h.script.on(
            "*", Step(usage=Usage(requests=1, input_tokens=10, output_tokens=5, cost_usd=0.01))
        )
        root = await h.submit(complexity=6, subtasks=plan(3))
        done = await h.wait_for(root.id)
    assert done.usage == Usage(requests=3, input_tokens=30, output_tokens=15, cost_usd=0.03)


# -- budgets --


async def test_a_token_budget_stops_the_task(make_harness: Callable[..., Any]) -> None:
    steps = [
        {"key": "big", "agent_type": "backend", "task": "Use many tokens", "complexity": 1},
        {
            "key": "next",
            "agent_type": "backend",
            "task": "Never runs at all",
            "complexity": 1,
            "depends_on": ["big"],
        },
    ]
    async with make_harness() as h:
        h.script.on("big", Step(usage=Usage(input_tokens=900, output_tokens=200)))
        root = await h.submit(complexity=6, subtasks=steps, budget={"max_tokens": 1000})
        done = await h.wait_for(root.id)
        children = {c.key: c for c in await h.children(root.id)}
    assert done.status == S.FAILED
    assert done.error is not None
    assert done.error.code == "budget_exceeded"
    assert done.error.message == "token budget exceeded: 1100 of 1000 tokens used"
    assert children["next"].status == S.CANCELLED


async def test_a_cost_budget_stops_the_task(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        h.script.on("*", Step(usage=Usage(cost_usd=0.6)))
        root = await h.submit(
            complexity=6,
            subtasks=[{**s, "depends_on": []} for s in TWO_STEPS],
            budget={"max_cost_usd": 1.0},
        )
        done = await h.wait_for(root.id)
    assert done.status == S.FAILED
    assert done.error is not None
    assert done.error.message.startswith("cost budget exceeded: $1.2000 of $1.0000")


async def test_agents_are_told_what_the_budget_leaves(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        h.script.on("first", Step(usage=Usage(input_tokens=300)))
        root = await h.submit(complexity=6, subtasks=TWO_STEPS, budget={"max_tokens": 1000})
        await h.wait_for(root.id)
    assert h.script.calls_for("first")[0].spec.max_tokens == 1000
    assert h.script.calls_for("second")[0].spec.max_tokens == 700


# -- timeouts --


async def test_an_attempt_that_takes_too_long_times_out(make_harness: Callable[..., Any]) -> None:
    rules = config(timeouts={"attempt_s": 0.2}, retry={"maximum_attempts": 2})
    async with make_harness(rules) as h:
        h.script.on("root", Step(block=True), Step())
        root = await h.submit(agent_type="backend")
        done = await h.wait_for(root.id)
        events = await h.events(root.id)
    assert done.status == S.COMPLETED
    assert done.attempt == 2
    (retry,) = [e for e in events if e.type == EventType.TASK_RETRYING]
    assert retry.data["error"]["code"] == "timeout"


async def test_a_task_past_its_deadline_fails(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        h.script.on("root", Step(block=True))
        root = await h.submit(agent_type="backend", budget={"timeout_s": 0.5})
        done = await h.wait_for(root.id)
    assert done.status == S.FAILED
    assert done.error is not None
    assert done.error.code == "timeout"


async def test_work_waiting_too_long_in_the_queue_fails(make_harness: Callable[..., Any]) -> None:
    rules = config(concurrency={"global": 1}, timeouts={"queue_wait_s": 0.3})
    async with make_harness(rules) as h:
        h.script.on("blocker", Step(block=True))
        first = await h.submit(
            complexity=2,
            subtasks=[
                {
                    "key": "blocker",
                    "agent_type": "backend",
                    "task": "Hold the slot",
                    "complexity": 1,
                }
            ],
        )
        await h.wait_for(first.id, S.IN_PROGRESS)
        second = await h.submit(agent_type="backend")
        done = await h.wait_for(second.id)
        await h.leader.cancel(first.id)
    assert done.status == S.FAILED
    assert done.error is not None
    assert done.error.code == "timeout"
    assert "queue wait" in done.error.message


async def test_a_phase_that_takes_too_long_fails_the_task(make_harness: Callable[..., Any]) -> None:
    async with make_harness(config(timeouts={"phase_s": 0.3})) as h:
        h.script.on("s0", Step(block=True))
        root = await h.submit(complexity=2, subtasks=plan(1))
        done = await h.wait_for(root.id)
    assert done.status == S.FAILED
    assert done.error is not None
    assert "implementation phase took longer than 0.3s" in done.error.message


# -- limits and priority --


async def test_the_global_limit_holds(make_harness: Callable[..., Any]) -> None:
    async with make_harness(config(concurrency={"global": 2})) as h:
        h.script.on("*", Step(sleep=0.1))
        root = await h.submit(complexity=8, subtasks=plan(6))
        done = await h.wait_for(root.id)
    assert done.status == S.COMPLETED
    assert h.script.peak == 2


async def test_the_per_agent_type_limit_holds(make_harness: Callable[..., Any]) -> None:
    rules = config(concurrency={"global": 10, "per_agent_type": {"frontend": 1}})
    async with make_harness(rules) as h:
        h.script.on("*", Step(sleep=0.1))
        root = await h.submit(complexity=8, subtasks=plan(4, agent_type="frontend"))
        await h.wait_for(root.id)
    assert h.script.peak == 1


async def test_the_per_user_limit_holds(
    make_harness: Callable[..., Any],
) -> None:
    rules = config(concurrency={"global": 10, "per_user": 2})
    async with make_harness(rules) as h:
        h.script.on("*", Step(sleep=0.1))
        root = await h.submit(complexity=8, subtasks=plan(5))
        other = await create_user(h.store, role=Role.DEVELOPER)
        second = await h.leader.submit(
            TaskRequest(task="Another user's work item", complexity=2, agent_type="backend"), other
        )
        await h.wait_for(root.id)
        await h.wait_for(second.task.id)
    # Two of the first user's plus one of the other's at most.
    assert h.script.peak <= 3


async def test_higher_priority_work_starts_first(make_harness: Callable[..., Any]) -> None:
    async with make_harness(config(concurrency={"global": 1})) as h:
        h.script.on("root", Step(gate=True), Step())
        blocker = await h.submit(task="Hold the only slot", agent_type="backend", priority=1)
        await h.wait_for(blocker.id, S.IN_PROGRESS)
        h.script.on("root", Step())
        waiting = [
            await h.submit(task=f"Work of priority {p}", agent_type="backend", priority=p)
            for p in (2, 9, 5)
        ]
        for task in waiting:
            await h.wait_for(task.id, S.DELEGATED)
        h.script.gate.set()
        for task in [blocker, *waiting]:
            await h.wait_for(task.id)
    order = [c.spec.priority for c in h.script.calls]
    assert order == [1, 9, 5, 2]


# -- approval --


async def test_a_plan_waits_for_approval_then_runs(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        root = await h.submit(complexity=6, subtasks=TWO_STEPS, require_approval=True)
        await h.wait_for(root.id, S.AWAITING_APPROVAL)
        assert h.script.calls == []
        subtask = (await h.children(root.id))[0]
        with pytest.raises(Conflict):  # only the plan as a whole is approved
            await h.leader.approve(subtask.id, True, None, h.user)
        await h.leader.approve(root.id, True, "looks right", h.user)
        done = await h.wait_for(root.id)
        events = await h.events(root.id)
    assert done.status == S.COMPLETED
    approved = next(e for e in events if e.type == EventType.TASK_APPROVED)
    assert approved.data["comment"] == "looks right"
    assert approved.data["by"] == h.user.username
    assert event_types(events).index("task.awaiting_approval") < event_types(events).index(
        "task.approved"
    )


async def test_a_rejected_plan_is_cancelled(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        root = await h.submit(complexity=6, subtasks=TWO_STEPS, require_approval=True)
        await h.wait_for(root.id, S.AWAITING_APPROVAL)
        await h.leader.approve(root.id, False, "not this way", h.user)
        done = await h.wait_for(root.id)
        children = await h.children(root.id)
    assert done.status == S.CANCELLED
    assert done.error is not None
    assert "not this way" in done.error.message
    assert {c.status for c in children} == {S.CANCELLED}
    assert h.script.calls == []


async def test_complex_plans_need_approval_above_the_threshold(
    make_harness: Callable[..., Any],
) -> None:
    async with make_harness(config(approval={"complexity_threshold": 3})) as h:
        small = await h.submit(agent_type="backend", complexity=2)
        big = await h.submit(complexity=6, subtasks=TWO_STEPS)
        assert (await h.wait_for(small.id)).status == S.COMPLETED
        assert (await h.wait_for(big.id, S.AWAITING_APPROVAL)).status == S.AWAITING_APPROVAL
        await h.leader.cancel(big.id)


async def test_approving_what_does_not_wait_is_a_conflict(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        root = await h.submit(agent_type="backend")
        await h.wait_for(root.id)
        with pytest.raises(Conflict, match="not awaiting approval"):
            await h.leader.approve(root.id, True, None, h.user)


# -- cancellation --


async def test_cancellation_reaches_running_agents(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        h.script.on("*", Step(block=True))
        root = await h.submit(complexity=6, subtasks=plan(3))
        await h.wait_for(root.id, S.IN_PROGRESS)
        await asyncio.wait_for(h.script.blocked.wait(), 10)
        await h.leader.cancel(root.id)
        done = await h.wait_for(root.id)
        children = await h.children(root.id)
        events = await h.events(root.id)
    assert done.status == S.CANCELLED
    assert {c.status for c in children} == {S.CANCELLED}
    assert h.script.running == set()  # every agent's await was cancelled
    assert event_types(events)[-1] == "task.cancelled"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_cancelling_a_finished_task_is_a_conflict(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        root = await h.submit(agent_type="backend")
        await h.wait_for(root.id)
        with pytest.raises(Conflict, match="already completed"):
            await h.leader.cancel(root.id)
