"""What the frontend and backend coders share: a worktree, the tools, a verified diff.

Each attempt works in its own git worktree of the project (`Workspaces`), on
the branch `devteam/<task id>`, through the MCP servers of a task scope rooted
there: the workspace server writes files inside the worktree and nowhere else,
the git server is confined to it, the sandbox server runs commands in it.

The fix loop: before the model starts, DevTeam runs the project's checks on the
base commit (failures already there are not blamed on the change). When the
model says it is done, DevTeam runs the checks itself; checks that newly fail go
back to the model — command, exit code, the end of the output — for at most
`verify.max_fix_rounds` rounds, within the attempt's budgets and stuck detection.
Then everything the model changed is committed on the branch, and the result
carries the diff from the base commit, the files changed (read from git, not
from the model), the branch, the checks and whether the change is `verified`.

A revision after a review (`__revision` in the task's metadata) continues the
earlier change's branch from its head; its briefing holds the review's findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from devteam.agents.base import Attempt, BaseAgent
from devteam.agents.briefing import briefing
from devteam.agents.delivery import Deliverer
from devteam.agents.manifests import is_test_path
from devteam.agents.models import CheckOutcome, CodeChange, CoderReport, Delivery, Review
from devteam.agents.reviewer import latest_changes
from devteam.agents.verification import (
    Verifier,
    checks_briefing,
    failures_prompt,
    newly_failing,
)
from devteam.agents.workspaces import ChangeSet, Resume
from devteam.domain.agents import AgentFailed
from devteam.domain.errors import ErrorCode, SandboxUnavailable
from devteam.domain.tasks import REVISION_KEY, TaskResult

SUBJECT_CHARS = 72


class CoderAgent(BaseAgent[CodeChange]):
    output_model = CodeChange

    async def work(self, attempt: Attempt) -> CodeChange:
        spec = attempt.spec
        workspaces = self.kit.workspaces
        repo = workspaces.require(spec.project_id, f"{self.agent_type} coder")
        revision = spec.metadata.get(REVISION_KEY)
        resume = _resume(revision)
        dependencies = attempt.context.dependencies
        verify = self.kit.verification.verify
        async with workspaces.worktree(repo, spec.id, resume=resume) as tree:
            await attempt.context.progress(
                "worktree ready", branch=tree.branch, base_commit=tree.base_commit
            )
            verifier = Verifier.for_worktree(tree.path, self.kit.verification, attempt.context)
            runnable, failing_before, note = await _baseline(verifier, resume, dependencies)
            # What set-up and the checks left behind (a virtualenv, build output) is not
            # part of the change.
            leave_out = await tree.untracked()
            async with self.kit.mcp.task_scope(tree.path, git_dir=tree.git_dir) as scope:
                toolset = scope.toolset(self.agent_type, observer=attempt.observer)
                prompt = briefing(
                    spec,
                    dependencies,
                    limit=self.kit.config.context.max_dependency_chars,
                    workspace=str(scope.workspace),
                    extra="\n\n".join(
                        p
                        for p in (
                            _revision_briefing(revision, dependencies),
                            checks_briefing(verifier.checks, failing_before),
                        )
                        if p
                    ),
                )
                report, history = await self.converse(attempt, CoderReport, prompt, [toolset])
                checks: list[CheckOutcome] = []
                fixes = 0
                if runnable:
                    checks = await verifier.run(1, failing_before)
                    while (failures := newly_failing(checks)) and fixes < verify.max_fix_rounds:
                        # Not the model's word: its change fails checks that passed before.
                        fixes += 1
                        feedback = failures_prompt(failures, fixes, verify.max_fix_rounds - fixes)
                        report, history = await self.converse(
                            attempt, CoderReport, feedback, [toolset], history
                        )
                        checks = await verifier.run(fixes + 1, failing_before)
            # No check at all verifies nothing: such a change is never delivered.
            verified = runnable and bool(checks) and not newly_failing(checks)
            if runnable:
                note += _verification_note(checks, verified, fixes, verifier.project.source)
            change = await tree.finish(
                commit_subject(spec.key, spec.task), report.summary, leave_out
            )
            await attempt.context.progress(
                "change committed",
                branch=tree.branch,
                commit=change.head_commit,
                files=len(change.files),
                verified=verified,
            )
        result = code_change(report, change, tree.branch, tree.base_commit)
        result = result.model_copy(
            update={
                "checks": checks,
                "verified": verified,
                "fix_rounds": fixes,
                "verification": note,
                "revision": _revision_number(revision),
            }
        )
        if spec.parent_id is None:
            # Handed the whole task (no plan, so no review): deliver it like a plan would.
            result = result.model_copy(
                update={"delivery": await self._deliver(attempt, repo, result)}
            )
        if not verified and verify.require_green:
            raise AgentFailed(
                ErrorCode.CHECKS_FAILED,
                f"the change on {tree.branch} is not verified: {note}",
            )
        return result

    async def _deliver(self, attempt: Attempt, repo: Path, change: CodeChange) -> Delivery | None:
        """Push the change when the project asks for it; a failure is recorded, not raised:
        the change stands on its branch either way."""
        try:
            config = Deliverer.project_delivery(repo)
        except AgentFailed as exc:
            await attempt.context.progress("delivery failed", reason=exc.message)
            return Delivery(summary=exc.message, delivered=False, reason=exc.message)
        if config is None:
            return None
        deliverer = Deliverer(
            self.kit.verification.delivery,
            attempt.context.progress,
            self.kit.config.git.ssh_command,
        )
        key = attempt.spec.key or "change"
        try:
            return await deliverer.deliver(
                repo, config, {key: change}, None, attempt.spec.root_task
            )
        except AgentFailed as exc:
            await attempt.context.progress("delivery failed", reason=exc.message)
            return Delivery(
                summary=exc.message, delivered=False, remote=config.remote, reason=exc.message
            )


async def _baseline(
    verifier: Verifier, resume: Resume | None, dependencies: Mapping[str, TaskResult]
) -> tuple[bool, dict[str, bool], str]:
    """Set the worktree up and learn which checks fail on the base commit (round 0).

    Whether the checks can run at all, each check's failing-before, and a note. A
    revision starts from the branch's head, not the base: what failed on the base
    commit is what the change it continues found.
    """
    note = ""
    try:
        if problem := await verifier.set_up():
            note = f"set-up failed: {problem}; "
        if resume is not None:
            return True, _failing_before(dependencies, resume.branch), note
        baseline = await verifier.run(0, {})
    except SandboxUnavailable as exc:
        return False, {}, f"checks not run: {exc.message}"
    return True, {c.name: not c.passed for c in baseline}, note


def _resume(revision: Any) -> Resume | None:
    if not isinstance(revision, Mapping):
        return None
    branch, base = revision.get("branch"), revision.get("base_commit")
    if not isinstance(branch, str) or not isinstance(base, str):
        return None
    return Resume(branch=branch, base_commit=base)


def _revision_number(revision: Any) -> int:
    number = revision.get("revision", 1) if isinstance(revision, Mapping) else 1
    return number if isinstance(number, int) and number >= 1 else 1


def _failing_before(dependencies: Mapping[str, TaskResult], branch: str) -> dict[str, bool]:
    """For a revision: what failed on the base commit, as the earlier change found."""
    for change in latest_changes(dependencies).values():
        if change.branch == branch:
            return {c.name: c.was_failing_before for c in change.checks}
    return {}


def _revision_briefing(revision: Any, dependencies: Mapping[str, TaskResult]) -> str:
    if not isinstance(revision, Mapping):
        return ""
    lines = [
        "## Revision after review",
        f"Your worktree holds the earlier change on branch {revision.get('branch')}. A "
        "review asked for changes: address every finding below, keep what is right, and "
        "summarise the whole change when you answer.",
    ]
    key = revision.get("review")
    review = dependencies.get(key) if isinstance(key, str) else None
    if review is not None and review.output_type == Review.__name__:
        found = Review.model_validate(review.output)
        lines.append(f"Review: {found.summary}")
        for f in found.findings:
            where = f"{f.file}:{f.line}" if f.line else f.file
            lines.append(f"- [{f.severity}] {where}: {f.message}")
    return "\n".join(lines)


def _verification_note(checks: list[CheckOutcome], verified: bool, fixes: int, source: str) -> str:
    if not checks:
        return "nothing was verified: neither .devteam.yaml nor the project's files name a check"
    passed = sum(c.passed for c in checks)
    text = f"{passed} of {len(checks)} checks pass ({source})"
    if verified and passed < len(checks):
        text += "; the others failed on the base commit too"
    if not verified:
        text += "; checks fail that passed on the base commit"
    if fixes:
        text += f"; after {fixes} fix round{'s' if fixes > 1 else ''}"
    return text


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
