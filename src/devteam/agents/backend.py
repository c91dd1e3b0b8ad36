"""The backend coder: server-side code, its tests, in its own worktree and branch."""

from __future__ import annotations

from devteam.agents.coder import CoderAgent
from devteam.domain.enums import AgentType


class BackendCoder(CoderAgent):
    agent_type = AgentType.BACKEND
    description = (
        "Implements server-side changes (APIs, services, data, CLIs) with tests, in its own "
        "git worktree; returns the diff and the branch holding it."
    )
    prompt_name = "backend_coder"
