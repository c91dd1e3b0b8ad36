"""The planner: explicit plans, direct delegation, templates, and LLM plans with re-plans."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from devteam.domain.enums import AgentType, Phase
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import SubtaskRequest
from devteam.orchestration.planning import Planner, PlanningFailed, build_subtasks
from devteam.settings import load_config
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage.types import utcnow
from tests.factories import make_task

CONFIG = TeamLeaderConfig()


def root(**overrides: Any) -> Any:
    return make_task(uuid.uuid4(), **overrides)


async def test_an_explicit_plan_is_used_as_given() -> None:
    plan = [
        SubtaskRequest(key="a", agent_type=AgentType.RESEARCH, task="Look things up", complexity=2),
        SubtaskRequest(
            key="b",
            agent_type=AgentType.BACKEND,
            task="Then build it",
            complexity=3,
            depends_on=["a"],
        ),
    ]
    outcome = await Planner().plan(root(complexity=8, plan=plan), CONFIG)
    assert outcome.source == "explicit"
    assert outcome.subtasks == plan


async def test_a_simple_task_is_delegated_directly() -> None:
    outcome = await Planner().plan(root(complexity=5), CONFIG)
    assert outcome.source == "direct"
    assert outcome.subtasks == []


async def test_without_an_llm_the_default_template_plans() -> None:
    outcome = await Planner().plan(
        root(complexity=10, task="Add search to the product list", task_type="chore"), CONFIG
    )
    assert outcome.source == "template"
    assert [(s.key, s.agent_type, s.effective_phase) for s in outcome.subtasks] == [
        ("research", AgentType.RESEARCH, Phase.RESEARCH),
        ("analysis", AgentType.CODEBASE_ANALYZER, Phase.ANALYSIS),
        ("implementation", AgentType.BACKEND, Phase.IMPLEMENTATION),
    ]
    assert all("Add search to the product list" in s.task for s in outcome.subtasks)
    assert [s.complexity for s in outcome.subtasks] == [2, 2, 5]


@pytest.mark.parametrize("project_id", [None, "shop"], ids=["no-project", "project"])
async def test_feature_plans_get_a_review_after_implementation_and_a_delivery_after_it(
    project_id: str | None,
) -> None:
    task = root(complexity=10, task="Add search to the product list", project_id=project_id)
    outcome = await Planner().plan(task, CONFIG)
    steps = [(s.key, s.agent_type, s.effective_phase, s.depends_on) for s in outcome.subtasks]
    assert steps[2:] == [
        ("implementation", AgentType.BACKEND, Phase.IMPLEMENTATION, ["research", "analysis"]),
        ("review", AgentType.REVIEWER, Phase.REVIEW, ["implementation"]),
    ] + ([("delivery", AgentType.DELIVERY, Phase.DELIVERY, ["review"])] if project_id else [])
    assert outcome.subtasks[3].complexity == 1


async def test_an_llm_plan_for_a_bugfix_gets_a_review_of_every_change() -> None:
    plan = {
        "subtasks": [
            {"key": "api", "agent_type": "backend", "task": "Fix the API", "complexity": 3},
            {"key": "page", "agent_type": "frontend", "task": "Fix the page", "complexity": 2},
        ]
    }
    model, _ = scripted_planner(plan)
    task = root(complexity=9, task_type="bugfix", project_id="shop")
    outcome = await Planner(lambda: model).plan(task, CONFIG)
    assert [(s.key, s.agent_type, s.depends_on) for s in outcome.subtasks] == [
        ("api", AgentType.BACKEND, []),
        ("page", AgentType.FRONTEND, []),
        ("review", AgentType.REVIEWER, ["api", "page"]),
        ("delivery", AgentType.DELIVERY, ["review"]),
    ]


async def test_templates_come_from_the_config_per_task_type() -> None:
    config = TeamLeaderConfig.model_validate(
        {
            "planner": {
                "templates": {
                    "ui": [
                        {
                            "key": "look",
                            "agent_type": "codebase_analyzer",
                            "phase": "analysis",
                            "task": "Study {task}",
                        },
                        {
                            "key": "build",
                            "agent_type": "frontend",
                            "phase": "implementation",
                            "task": "Build {task}",
                            "complexity_share": 0.5,
                            "depends_on": ["look"],
                        },
                    ]
                }
            }
        }
    )
    outcome = await Planner().plan(root(complexity=8, task_type="ui", task="a dark mode"), config)
    assert [(s.key, s.task, s.complexity) for s in outcome.subtasks] == [
        ("look", "Study a dark mode", 2),
        ("build", "Build a dark mode", 4),
    ]


def scripted_planner(*plans: dict[str, Any]) -> tuple[FunctionModel, list[list[ModelMessage]]]:
    """A model that answers each planning request with the next plan."""
    seen: list[list[ModelMessage]] = []

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(list(messages))
        plan = plans[min(len(seen), len(plans)) - 1]
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, plan)])

    return FunctionModel(reply), seen


BAD_PLAN = {
    "subtasks": [
        {"key": "all", "agent_type": "backend", "task": "Everything at once", "complexity": 9}
    ],
    "rationale": "one big step",
}
GOOD_PLAN = {
    "subtasks": [
        {"key": "look", "agent_type": "codebase_analyzer", "task": "Map the code", "complexity": 3},
        {
            "key": "build",
            "agent_type": "backend",
            "task": "Build the feature",
            "complexity": 5,
            "depends_on": ["look"],
        },
    ],
    "rationale": "analyse, then build",
}


async def test_an_llm_plan_that_breaks_the_rules_is_sent_back() -> None:
    model, seen = scripted_planner(BAD_PLAN, GOOD_PLAN)
    outcome = await Planner(lambda: model).plan(root(complexity=9), CONFIG)
    assert outcome.source == "llm"
    assert outcome.replans == 1
    assert [s.key for s in outcome.subtasks] == ["look", "build", "review"]
    assert outcome.rationale == "analyse, then build"
    assert outcome.usage.requests == 2
    # The second request carried the rule violations back to the model.
    sent_back = [
        str(getattr(part, "content", ""))
        for message in seen[1]
        if isinstance(message, ModelRequest)
        for part in message.parts
    ]
    assert any(
        "subtask 'all' has complexity 9, above the per-task limit 5: split it" in text
        for text in sent_back
    )


async def test_an_llm_that_keeps_breaking_the_rules_fails_planning() -> None:
    model, seen = scripted_planner(BAD_PLAN)
    config = TeamLeaderConfig.model_validate({"planner": {"max_replans": 2}})
    with pytest.raises(PlanningFailed) as failed:
        await Planner(lambda: model).plan(root(complexity=9), config)
    assert failed.value.code == ErrorCode.LLM_ERROR
    assert len(seen) == 3  # the first plan and two re-plans


def test_subtasks_keep_the_plan_order_and_link_dependencies() -> None:
    parent = root(complexity=8, priority=7, project_id="shop")
    plan = [
        SubtaskRequest(key="a", agent_type=AgentType.RESEARCH, task="Look things up", complexity=2),
        SubtaskRequest(
            key="b",
            agent_type=AgentType.BACKEND,
            task="Then build it",
            complexity=3,
            depends_on=["a"],
        ),
    ]
    a, b = build_subtasks(parent, plan, utcnow())
    assert a.created_at < b.created_at
    assert b.depends_on == [a.id]
    assert (a.parent_id, a.root_id, a.priority, a.project_id) == (parent.id, parent.id, 7, "shop")
    assert a.phase == Phase.RESEARCH
    assert b.phase == Phase.IMPLEMENTATION


@pytest.mark.parametrize(
    ("task_type", "keys"),
    [
        ("feature", ["research", "analysis", "implementation", "review", "delivery"]),
        ("bugfix", ["analysis", "implementation", "review", "delivery"]),
    ],
)
async def test_the_shipped_templates_review_features_and_bugfixes(
    task_type: str, keys: list[str]
) -> None:
    shipped = load_config(Path(__file__).resolve().parents[3] / "config").team_leader
    task = root(complexity=7, task_type=task_type, project_id="shop", task="Fix the search page")
    outcome = await Planner().plan(task, shipped)
    assert [s.key for s in outcome.subtasks] == keys
    review = next(s for s in outcome.subtasks if s.key == "review")
    assert (review.agent_type, review.depends_on) == (AgentType.REVIEWER, ["implementation"])
