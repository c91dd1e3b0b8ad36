"""Root tasks run to completion through the TeamLeader, on both backend pairs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devteam.domain.enums import AgentType, Phase, TaskStatus
from devteam.domain.events import EventType
from tests.integration.orchestration.conftest import event_types

S = TaskStatus

SIX_STEP_PLAN = [
    {"key": "research", "agent_type": "research", "task": "Research the options", "complexity": 2},
    {
        "key": "analysis",
        "agent_type": "codebase_analyzer",
        "task": "Map the codebase",
        "complexity": 2,
    },
    {
        "key": "api",
        "agent_type": "backend",
        "task": "Build the API endpoint",
        "complexity": 4,
        "depends_on": ["analysis"],
    },
    {
        "key": "docs",
        "agent_type": "backend",
        "task": "Document the endpoint",
        "complexity": 1,
        "depends_on": ["research"],
    },
    {
        "key": "ui",
        "agent_type": "frontend",
        "task": "Build the page for it",
        "complexity": 3,
        "depends_on": ["api"],
    },
    {
        "key": "review",
        "agent_type": "backend",
        "task": "Review the whole change",
        "complexity": 2,
        "phase": "review",
        "depends_on": ["api", "ui"],
    },
]


async def test_six_subtasks_over_four_phases_complete(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        root = await h.submit(
            task="Add an endpoint with its page", complexity=8, subtasks=SIX_STEP_PLAN
        )
        done = await h.wait_for(root.id)
        children = await h.children(root.id)
        events = await h.events(root.id)

    assert done.status == S.COMPLETED, done.error
    assert {c.key: c.status for c in children} == {s["key"]: S.COMPLETED for s in SIX_STEP_PLAN}
    assert {c.key: c.phase for c in children} == {
        "research": Phase.RESEARCH,
        "analysis": Phase.ANALYSIS,
        "api": Phase.IMPLEMENTATION,
        "docs": Phase.IMPLEMENTATION,
        "ui": Phase.IMPLEMENTATION,
        "review": Phase.REVIEW,
    }
    # The root's result gathers every child's.
    assert set(done.result["subtasks"]) == {s["key"] for s in SIX_STEP_PLAN}
    assert done.result["subtasks"]["ui"]["result"]["output"]["saw"] == [
        "analysis",
        "api",
        "research",
    ]

    # One history, numbered 1..N without gap.
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert event_types(events) == [
        "task.created",
        "task.progress",  # planning
        "task.planned",
        "task.delegated",
        "task.started",
        "task.completed",
    ]
    by_id = {c.id: c for c in children}
    for child in children:
        statuses = [t for t in event_types(events, child.id) if t != "rule.decision"]
        assert statuses == [
            "task.created",
            "task.delegated",
            "task.started",
            "task.completed",
        ]
    # Why each waiting subtask waited is in the history.
    waits = [e for e in events if e.type == EventType.RULE_DECISION]
    assert {by_id[e.subtask_id].key for e in waits} == {"analysis", "api", "docs", "ui", "review"}
    assert any(e.data["rule"] == "WaitForDependencies" and "api" in e.data["reason"] for e in waits)
    assert any(e.data["rule"] == "WaitForEarlierPhases" for e in waits)

    # Order: a subtask starts only after its dependencies and earlier phases completed.
    seq_of = {(e.subtask_id, e.type): e.seq for e in events if e.subtask_id is not None}
    for child in children:
        started = seq_of[(child.id, EventType.TASK_STARTED)]
        for dep in child.depends_on:
            assert seq_of[(dep, EventType.TASK_COMPLETED)] < started
        for other in children:
            if Phase(other.phase).order < Phase(child.phase).order:
                assert seq_of[(other.id, EventType.TASK_COMPLETED)] < started, (
                    f"{child.key} started before {other.key} ({by_id[other.id].phase}) ended"
                )
    root_done = next(
        e for e in events if e.type == EventType.TASK_COMPLETED and e.subtask_id is None
    )
    assert root_done.seq == events[-1].seq


async def test_each_completed_subtask_ran_once(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        root = await h.submit(
            task="Add an endpoint with its page", complexity=8, subtasks=SIX_STEP_PLAN
        )
        await h.wait_for(root.id)
    assert {k: len(h.script.calls_for(k)) for k in h.script.finished} == {
        s["key"]: 1 for s in SIX_STEP_PLAN
    }


async def test_a_simple_task_goes_straight_to_its_agent(make_harness: Callable[..., Any]) -> None:
    async with make_harness() as h:
        root = await h.submit(
            task="Fix the typo in the README", complexity=2, agent_type="frontend"
        )
        done = await h.wait_for(root.id)
        events = await h.events(root.id)
        children = await h.children(root.id)
    assert done.status == S.COMPLETED
    assert done.agent_type == AgentType.FRONTEND
    assert done.result["output"]["key"] == "root"
    assert children == []
    assert event_types(events) == [
        "task.created",
        "task.progress",
        "task.planned",
        "task.delegated",
        "task.started",
        "task.completed",
    ]
    planned = next(e for e in events if e.type == EventType.TASK_PLANNED)
    assert planned.data["planner"] == "direct"
