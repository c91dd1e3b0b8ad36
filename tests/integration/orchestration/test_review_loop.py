"""The review loop: a review that requests changes sends the work back to the coder.

Real TeamLeader, rules and executors on both backend pairs; the coder and the
reviewer are scripted agents returning a `CodeChange` and a `Review`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devteam.domain.agents import AgentContext
from devteam.domain.enums import AgentType, TaskStatus
from devteam.domain.events import EventType
from devteam.domain.tasks import REVIEW_ROUND_KEY, REVISION_KEY, TaskResult, TaskSpec
from devteam.orchestration.policy import default_policy
from devteam.orchestration.rules.review import SendRequestedChangesBack
from tests.fakes.agents import ScriptBook
from tests.integration.orchestration.conftest import config

S = TaskStatus

PLAN = [
    {"key": "api", "agent_type": "backend", "task": "Add the /version route", "complexity": 3},
    {
        "key": "review",
        "agent_type": "reviewer",
        "task": "Review the /version route",
        "complexity": 1,
        "depends_on": ["api"],
    },
]
FINDING = {"file": "app/main.py", "line": 3, "severity": "major", "message": "Test it."}


class Coder:
    """A coder whose change is on one branch; a revision continues it."""

    agent_type = AgentType.BACKEND
    description = "a scripted coder"

    def __init__(self) -> None:
        self.specs: list[TaskSpec] = []
        self.seen: list[dict[str, TaskResult]] = []

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        self.specs.append(spec)
        self.seen.append(dict(context.dependencies))
        revision = spec.metadata.get(REVISION_KEY) or {}
        change = {
            "summary": f"change {spec.key}",
            "branch": revision.get("branch", f"devteam/{spec.id}"),
            "base_commit": revision.get("base_commit", "0" * 40),
            "head_commit": f"{len(self.specs):040d}",
            "verified": True,
            "revision": revision.get("revision", 1),
        }
        return TaskResult(output=change, summary=change["summary"], output_type="CodeChange")


class Reviewer:
    """A reviewer answering each round with the next verdict of its list."""

    agent_type = AgentType.REVIEWER
    description = "a scripted reviewer"

    def __init__(self, *verdicts: str) -> None:
        self.verdicts = verdicts
        self.rounds: list[int] = []

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        round_ = spec.metadata.get(REVIEW_ROUND_KEY, 1)
        self.rounds.append(round_)
        verdict = self.verdicts[min(round_, len(self.verdicts)) - 1]
        findings = [FINDING] if verdict == "request_changes" else []
        review = {"verdict": verdict, "summary": f"round {round_}", "findings": findings,
                  "round": round_}  # fmt: skip
        return TaskResult(output=review, summary=review["summary"], output_type="Review")


def agents(script: ScriptBook, coder: Coder, reviewer: Reviewer) -> dict[AgentType, Any]:
    return {**script.agents(), AgentType.BACKEND: coder, AgentType.REVIEWER: reviewer}


async def test_a_request_for_changes_sends_the_work_back_then_the_new_review_approves(
    make_harness: Callable[..., Any], script: ScriptBook
) -> None:
    coder, reviewer = Coder(), Reviewer("request_changes", "approve")
    async with make_harness(agents=agents(script, coder, reviewer)) as h:
        root = await h.submit(task="Add a /version route", complexity=4, subtasks=PLAN)
        done = await h.wait_for(root.id)
        children = {c.key: c for c in await h.children(root.id)}
        events = await h.events(root.id)

    assert done.status == S.COMPLETED, done.error
    assert list(children) == ["api", "review", "api-r2", "review-r2"]
    assert all(c.status == S.COMPLETED for c in children.values())
    assert reviewer.rounds == [1, 2]

    # The revision continues the first change's branch, and works from the review.
    first, second = coder.specs
    assert second.key == "api-r2"
    branch = f"devteam/{first.id}"
    assert second.metadata[REVISION_KEY] == {
        "of": "api",
        "revision": 2,
        "branch": branch,
        "base_commit": "0" * 40,
        "review": "review",
    }
    assert coder.seen[1]["review"].output["findings"] == [FINDING]
    assert set(children["api-r2"].depends_on) == {children["api"].id, children["review"].id}
    assert children["review-r2"].depends_on == [children["api-r2"].id]

    # Each round is a review.completed event; the send-back is a readable rule decision.
    reviews = [e.data for e in events if e.type == EventType.REVIEW_COMPLETED]
    assert [(r["verdict"], r["round"]) for r in reviews] == [
        ("request_changes", 1),
        ("approve", 2),
    ]
    assert reviews[0]["findings"] == [FINDING]
    decisions = [
        e.data
        for e in events
        if e.type == EventType.RULE_DECISION and e.data["rule"] == "SendRequestedChangesBack"
    ]
    assert len(decisions) == 1
    assert decisions[0]["reason"] == (
        "review round 1 of 2 requested changes (1 finding): the work goes back to api as "
        "api-r2, then review review-r2"
    )

    # The root's result: the latest change per branch is verified, the last review approves.
    assert done.result is not None
    assert done.result["verified"] is True
    assert done.result["review"] == {"verdict": "approve", "round": 2}


async def test_the_review_is_final_once_the_rounds_are_used_up(
    make_harness: Callable[..., Any], script: ScriptBook
) -> None:
    coder, reviewer = Coder(), Reviewer("request_changes")
    rules = config(review={"max_rounds": 1})
    async with make_harness(rules, agents=agents(script, coder, reviewer)) as h:
        root = await h.submit(task="Add a /version route", complexity=4, subtasks=PLAN)
        done = await h.wait_for(root.id)
        children = [c.key for c in await h.children(root.id)]
        events = await h.events(root.id)

    assert done.status == S.COMPLETED
    assert children == ["api", "review", "api-r2", "review-r2"]
    assert reviewer.rounds == [1, 2]
    assert done.result is not None
    assert done.result["review"] == {"verdict": "request_changes", "round": 2}
    reasons = [
        e.data["reason"]
        for e in events
        if e.type == EventType.RULE_DECISION and e.data["rule"] == "SendRequestedChangesBack"
    ]
    assert reasons[-1] == (
        "review round 2 requested changes and the 1 rounds of review.max_rounds are used up: "
        "the change stays unapproved and is not delivered"
    )


async def test_without_the_rule_a_request_for_changes_ends_the_work(
    make_harness: Callable[..., Any], script: ScriptBook
) -> None:
    coder, reviewer = Coder(), Reviewer("request_changes", "approve")
    policy = default_policy().without(SendRequestedChangesBack)
    async with make_harness(agents=agents(script, coder, reviewer), policy=policy) as h:
        root = await h.submit(task="Add a /version route", complexity=4, subtasks=PLAN)
        done = await h.wait_for(root.id)
        children = [c.key for c in await h.children(root.id)]

    assert done.status == S.COMPLETED
    assert children == ["api", "review"]
    assert reviewer.rounds == [1]
