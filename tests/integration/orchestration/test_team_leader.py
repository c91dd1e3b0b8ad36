"""The TeamLeader's own duties: refusing bad plans at submission, idempotency, rule reloads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devteam.domain.enums import TaskStatus
from devteam.domain.errors import ConfigError, Conflict, ValidationFailed
from devteam.domain.events import EventType
from devteam.domain.tasks import TaskRequest
from tests.unit.orchestration.test_planner import BAD_PLAN, GOOD_PLAN, scripted_planner

S = TaskStatus


def step(key: str, complexity: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "agent_type": "backend",
        "task": f"Do the {key} part",
        "complexity": complexity,
    } | extra


@pytest.mark.parametrize(
    ("subtasks", "message"),
    [
        ([step("a", 7)], "subtask 'a' has complexity 7, above the per-task limit 5"),
        (
            [step(k, 5) for k in "abcdef"],
            "the subtasks' complexity adds up to 30, above the budget of 25 per root task",
        ),
    ],
    ids=["per-task-limit", "root-budget"],
)
async def test_plans_that_break_the_rules_are_refused_at_submission(
    make_harness: Callable[..., Any], subtasks: list[dict[str, Any]], message: str
) -> None:
    async with make_harness(start=False) as h:
        with pytest.raises(ValidationFailed) as refused:
            await h.submit(complexity=8, subtasks=subtasks)
    assert message in refused.value.message
    assert refused.value.details[0]["field"] == "subtasks"


@pytest.mark.parametrize(
    ("subtasks", "message"),
    [
        (
            [step("a", depends_on=["b"]), step("b", depends_on=["a"])],
            "dependency cycle: a -> b -> a",
        ),
        ([step("a", depends_on=["ghost"])], "subtask 'a' depends on unknown key 'ghost'"),
        ([step("a"), step("a")], "subtask key 'a' is used twice"),
        ([step("a", depends_on=["a"])], "subtask 'a' depends on itself"),
    ],
    ids=["cycle", "unknown-key", "duplicate-key", "self"],
)
def test_broken_dependency_graphs_are_refused(subtasks: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("->", "->")):
        TaskRequest(task="A task with a broken plan", complexity=5, subtasks=subtasks)


async def test_a_project_that_does_not_exist_is_refused(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    from devteam.agents.workspaces import Workspaces
    from devteam.settings.agents import GitConfig

    (tmp_path / "shop" / ".git").mkdir(parents=True)
    workspaces = Workspaces(tmp_path, GitConfig())
    async with make_harness(start=False, project_check=workspaces.check) as h:
        await h.submit(project_id="shop")
        with pytest.raises(ValidationFailed, match="project 'nope' does not exist"):
            await h.submit(project_id="nope")


async def test_an_idempotency_key_returns_the_first_submission(
    make_harness: Callable[..., Any],
) -> None:
    async with make_harness(start=False) as h:
        request = TaskRequest(task="Only once, please", complexity=2)
        first = await h.leader.submit(request, h.user, idempotency_key="k-1")
        again = await h.leader.submit(request, h.user, idempotency_key="k-1")
        other = TaskRequest(task="Something else entirely", complexity=2)
        with pytest.raises(Conflict, match="different request body"):
            await h.leader.submit(other, h.user, idempotency_key="k-1")
    assert first.created
    assert not again.created
    assert again.task.id == first.task.id


async def test_rules_reload_and_a_bad_file_keeps_the_old_ones(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "team_leader.yaml"
    path.write_text("concurrency:\n  global: 3\n")
    async with make_harness(start=False, config_path=path) as h:
        assert h.leader.reload_rules().concurrency.global_limit == 3
        path.write_text("concurrency:\n  global: -1\n")
        with pytest.raises(
            ConfigError, match=r"concurrency\.global: Input should be greater than 0"
        ):
            h.leader.reload_rules()
        assert h.leader.config().concurrency.global_limit == 3
        rules = h.leader.describe_rules()
    assert rules["config"]["concurrency"]["global"] == 3
    assert [r["name"] for r in rules["policy"]][:2] == ["HonourCancellation", "AllowOnlyValidMoves"]


async def test_a_reloaded_rule_applies_to_the_next_decision(
    make_harness: Callable[..., Any], tmp_path: Path
) -> None:
    path = tmp_path / "team_leader.yaml"
    path.write_text("approval:\n  complexity_threshold: 2\n")
    async with make_harness(config_path=path) as h:
        before = await h.submit(agent_type="backend", complexity=3)
        assert (await h.wait_for(before.id)).status == S.COMPLETED
        h.leader.reload_rules()
        after = await h.submit(agent_type="backend", complexity=3)
        assert (await h.wait_for(after.id, S.AWAITING_APPROVAL)).status == S.AWAITING_APPROVAL
        await h.leader.cancel(after.id)


async def test_an_llm_planned_task_runs_to_completion(make_harness: Callable[..., Any]) -> None:
    model, _ = scripted_planner(BAD_PLAN, GOOD_PLAN)
    async with make_harness(planner_model=lambda: model) as h:
        root = await h.submit(task="Add search to the product list", complexity=9)
        done = await h.wait_for(root.id)
        events = await h.events(root.id)
    assert done.status == S.COMPLETED
    planned = next(e for e in events if e.type == EventType.TASK_PLANNED)
    assert planned.data["planner"] == "llm"
    assert planned.data["replans"] == 1
    # A feature's plan gets a review after the change (no project: no delivery step).
    assert [s["key"] for s in planned.data["subtasks"]] == ["look", "build", "review"]
    assert done.usage.requests == 2  # the planner's LLM requests count on the task
