"""The frontend coder: user interface code, its tests, in its own worktree and branch."""

from __future__ import annotations

from devteam.agents.coder import CoderAgent
from devteam.domain.enums import AgentType


class FrontendCoder(CoderAgent):
    agent_type = AgentType.FRONTEND
    description = (
        "Implements user-interface changes (pages, components, styles, client calls) with "
        "tests, in its own git worktree; returns the diff and the branch holding it."
    )
    prompt_name = "frontend_coder"
