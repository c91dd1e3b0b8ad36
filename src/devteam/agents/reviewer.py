"""The reviewer: reads the task, the change, its check results and the code; a verdict.

It reviews the code changes its subtask depends on (the latest revision of each
branch), with the project's checks as DevTeam ran them. It looks at the code
through read-only tools (files and git history) in a detached worktree at the
head of the change it reviews, so what it reads is what would be delivered. Its
`Review` either approves or requests changes; a request for changes sends the
work back to the coder (see `orchestration/rules/review.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from devteam.agents.base import Attempt, BaseAgent
from devteam.agents.briefing import briefing
from devteam.agents.models import CodeChange, Review, ReviewReport
from devteam.domain.agents import AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import REVIEW_ROUND_KEY, TaskResult

if TYPE_CHECKING:
    from pydantic_ai.toolsets import AbstractToolset

OUTPUT_TAIL_CHARS = 2_000
"""Of each check's output, the end shown to the reviewer."""


def latest_changes(dependencies: Mapping[str, TaskResult]) -> dict[str, CodeChange]:
    """The code changes among `dependencies`, the latest revision of each branch, by key."""
    latest: dict[str, tuple[str, CodeChange]] = {}
    for key in sorted(dependencies):
        result = dependencies[key]
        if result.output_type != CodeChange.__name__:
            continue
        change = CodeChange.model_validate(result.output)
        current = latest.get(change.branch)
        if current is None or change.revision > current[1].revision:
            latest[change.branch] = (key, change)
    return dict(latest.values())


def render_change(key: str, change: CodeChange, diff_limit: int) -> str:
    lines = [
        f"### {key}: branch {change.branch} (revision {change.revision})",
        f"Summary: {change.summary}",
        f"Verified: {'yes' if change.verified else 'no'}"
        + (f" — {change.verification}" if change.verification else ""),
    ]
    if change.checks:
        lines.append("Checks (run by DevTeam on the final change):")
        for check in change.checks:
            state = "passed" if check.passed else f"FAILED (exit code {check.exit_code})"
            if not check.passed and check.was_failing_before:
                state += ", failing on the base commit too"
            lines.append(f"- {check.name} `{check.command}`: {state}")
            if not check.passed and check.output_tail:
                tail = check.output_tail[-OUTPUT_TAIL_CHARS:]
                lines += ["  ```", *(f"  {t}" for t in tail.splitlines()), "  ```"]
    diff = change.diff
    if len(diff) > diff_limit:
        diff = diff[:diff_limit] + f"\n... [cut: {len(change.diff) - diff_limit} more characters]"
    lines += ["```diff", diff or "(no change)", "```"]
    return "\n".join(lines)


class ReviewerAgent(BaseAgent[Review]):
    agent_type = AgentType.REVIEWER
    description = (
        "Reviews code changes against the task: reads the diff, the check results and the "
        "code (read-only tools); approves or requests changes with findings."
    )
    prompt_name = "reviewer"
    output_model = Review

    async def work(self, attempt: Attempt) -> Review:
        spec = attempt.spec
        dependencies = attempt.context.dependencies
        changes = latest_changes(dependencies)
        if not changes:
            raise AgentFailed(
                ErrorCode.VALIDATION_ERROR,
                "the reviewer has no code change to review: make the review depend on a "
                "frontend or backend subtask",
            )
        round_ = _round(spec.metadata)
        limit = self.kit.config.context.max_dependency_chars
        others = {k: r for k, r in dependencies.items() if r.output_type != CodeChange.__name__}
        key, shown = next(iter(changes.items()))
        commit = shown.head_commit or shown.base_commit
        rendered = "\n\n".join(render_change(k, c, limit) for k, c in changes.items())
        extra = f"## The changes to review (review round {round_})\n\n{rendered}"
        async with AsyncExitStack() as stack:
            toolsets: list[AbstractToolset[Any]] = []
            workspace = None
            if spec.project_id is not None:
                repo = self.kit.workspaces.require(spec.project_id, "reviewer")
                path = await stack.enter_async_context(
                    self.kit.workspaces.snapshot(repo, spec.id, commit)
                )
                scope = await stack.enter_async_context(self.kit.mcp.task_scope(path))
                toolsets.append(scope.toolset(self.agent_type, observer=attempt.observer))
                workspace = str(scope.workspace)
                extra += (
                    f"\n\nThe workspace holds {key}'s branch {shown.branch} at {commit[:12]} "
                    "(read-only)."
                )
            await attempt.context.progress(
                "reviewing", changes=sorted(changes), round=round_, commit=commit
            )
            prompt = briefing(spec, others, limit=limit, workspace=workspace, extra=extra)
            report = await self.ask(attempt, ReviewReport, prompt, toolsets)
        return Review(
            **report.model_dump(),
            round=round_,
            reviewed=sorted(changes),
            branches=sorted(c.branch for c in changes.values()),
        )


def _round(metadata: Mapping[str, Any]) -> int:
    value = metadata.get(REVIEW_ROUND_KEY, 1)
    return value if isinstance(value, int) and value >= 1 else 1
