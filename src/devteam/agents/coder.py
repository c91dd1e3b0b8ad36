"""What the frontend and backend coders share: a worktree, the tools, a committed diff.

Each attempt works in its own git worktree of the project (`Workspaces`), on
the branch `devteam/<task id>`, through the MCP servers of a task scope rooted
there: the workspace server writes files inside the worktree and nowhere else,
the git server is confined to it. When the model is done, everything it changed
is committed on the branch, and the result carries the diff from the base
commit, the files changed (read from git, not from the model) and the branch.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from devteam.agents.base import Attempt, BaseAgent
from devteam.agents.briefing import briefing
from devteam.agents.manifests import is_test_path
from devteam.agents.models import CodeChange, CoderReport
from devteam.agents.workspaces import ChangeSet

SUBJECT_CHARS = 72


class CoderAgent(BaseAgent[CodeChange]):
    output_model = CodeChange

    async def work(self, attempt: Attempt) -> CodeChange:
        spec = attempt.spec
        workspaces = self.kit.workspaces
        repo = workspaces.require(spec.project_id, f"{self.agent_type} coder")
        async with workspaces.worktree(repo, spec.id) as tree:
            await attempt.context.progress(
                "worktree ready", branch=tree.branch, base_commit=tree.base_commit
            )
            async with self.kit.mcp.task_scope(tree.path, git_dir=tree.git_dir) as scope:
                toolset = scope.toolset(self.agent_type, observer=attempt.observer)
                prompt = briefing(
                    spec,
                    attempt.context.dependencies,
                    limit=self.kit.config.context.max_dependency_chars,
                    workspace=str(scope.workspace),
                )
                report = await self.ask(attempt, CoderReport, prompt, [toolset])
            change = await tree.finish(commit_subject(spec.key, spec.task), report.summary)
            await attempt.context.progress(
                "change committed",
                branch=tree.branch,
                commit=change.head_commit,
                files=len(change.files),
            )
        return code_change(report, change, tree.branch, tree.base_commit)


def commit_subject(key: str | None, task: str) -> str:
    first = task.strip().splitlines()[0] if task.strip() else "change"
    subject = f"{key}: {first}" if key else first
    return subject if len(subject) <= SUBJECT_CHARS else subject[: SUBJECT_CHARS - 1] + "…"


def code_change(report: CoderReport, change: ChangeSet, branch: str, base: str) -> CodeChange:
    tests = [
        f.path
        for f in change.files
        if f.status != "deleted" and is_test_path(f.path) and PurePosixPath(f.path).suffix
    ]
    return CodeChange(
        summary=report.summary,
        branch=branch,
        base_commit=base,
        head_commit=change.head_commit,
        files_changed=change.files,
        diff=change.diff,
        tests_added=tests,
        follow_ups=report.follow_ups,
    )
