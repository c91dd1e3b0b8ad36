"""DevTeam runs a project's checks itself, in the coder's worktree, in the sandbox.

The checks and set-up come from the project (`.devteam.yaml`, else detected from
its files). Before the coder starts, the checks run on the base commit (round 0),
so a check that already failed is known and not blamed on the change. After the
model says it is done, they run again (round 1, 2, ...): each run of a check is a
`check.completed` event. The model's word that the tests pass is never taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devteam.agents.models import CheckOutcome
from devteam.domain.agents import AgentContext, AgentFailed
from devteam.domain.errors import ErrorCode, InvalidProjectConfig
from devteam.domain.events import EventType
from devteam.sandbox import ProjectChecks, Sandbox, load_project_checks
from devteam.settings.verification import VerificationConfig

CHECK_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
"""Python writes no bytecode caches while checks run: a file rewritten within the same
second at the same size would otherwise run from its stale cache, and none is left
behind in the worktree to be committed."""


def tail(text: str, chars: int) -> str:
    return text if len(text) <= chars else "…" + text[-(chars - 1) :]


@dataclass
class Verifier:
    sandbox: Sandbox
    project: ProjectChecks
    config: VerificationConfig
    context: AgentContext

    @classmethod
    def for_worktree(
        cls, path: Path, config: VerificationConfig, context: AgentContext
    ) -> Verifier:
        try:
            project = load_project_checks(path)
        except InvalidProjectConfig as exc:
            raise AgentFailed(ErrorCode.VALIDATION_ERROR, exc.message) from None
        return cls(Sandbox.from_config(path, config.sandbox), project, config, context)

    @property
    def checks(self) -> Mapping[str, str]:
        return self.project.checks

    async def set_up(self) -> str | None:
        """Run the project's set-up commands; what went wrong, or None."""
        if not self.config.verify.run_setup:
            return None
        for command in self.project.setup:
            network = self.config.sandbox.setup_network
            result = await self.sandbox.run(command, network=network, env=CHECK_ENV)
            await self.context.progress(
                "setup command ran",
                command=command,
                exit_code=result.exit_code,
                duration_s=round(result.duration_s, 3),
            )
            if not result.passed:
                return f"the setup command `{command}` exited with {result.exit_code}"
        return None

    async def run(self, round_: int, failing_before: Mapping[str, bool]) -> list[CheckOutcome]:
        """Every check once, in order; each run is a `check.completed` event."""
        outcomes = []
        for name, command in self.project.checks.items():
            result = await self.sandbox.run(command, env=CHECK_ENV)
            outcome = CheckOutcome(
                name=name,
                command=command,
                exit_code=result.exit_code,
                passed=result.passed,
                was_failing_before=failing_before.get(name, False),
                duration_s=round(result.duration_s, 3),
                output_tail=tail(result.output, self.config.verify.output_tail_chars),
            )
            await self.context.record(
                EventType.CHECK_COMPLETED,
                name=name,
                command=command,
                round=round_,
                exit_code=outcome.exit_code,
                passed=outcome.passed,
                duration_s=outcome.duration_s,
            )
            outcomes.append(outcome)
        return outcomes


def newly_failing(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    return [o for o in outcomes if o.newly_failing]


def failures_prompt(failures: list[CheckOutcome], round_: int, rounds_left: int) -> str:
    """What goes back to the model when checks fail that did not fail before its change."""
    parts = [
        f"DevTeam ran the project's checks on your change (round {round_}). These fail, "
        "and did not fail on the base commit:"
    ]
    for check in failures:
        state = "timed out" if check.exit_code == 124 else f"exit code {check.exit_code}"
        parts.append(
            f"### {check.name}: `{check.command}` ({state})\n```\n{check.output_tail}\n```"
        )
    parts.append(
        "Fix the change so that they pass (you may run them yourself with run_command), "
        f"then answer again with the summary of the whole change. Rounds left after this "
        f"one: {rounds_left}."
    )
    return "\n\n".join(parts)


def checks_briefing(checks: Mapping[str, str], failing_before: Mapping[str, bool]) -> str:
    """What the coder is told about the checks before it starts."""
    if not checks:
        return ""
    lines = [
        "## Checks",
        "When you are done, DevTeam runs these checks in your worktree; a check that "
        "fails because of your change comes back to you to fix:",
    ]
    for name, command in checks.items():
        note = " (fails already on the base commit)" if failing_before.get(name) else ""
        lines.append(f"- {name}: `{command}`{note}")
    return "\n".join(lines)
