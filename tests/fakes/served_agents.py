"""Scripted agents for a `devteam serve` subprocess: `--agents tests.fakes.served_agents:agents`.

The script comes from `DEVTEAM_TEST_AGENT_SCRIPT`, JSON mapping task keys (`root`
for a root task run directly, `*` for any) to a list of steps, one per attempt:
`{"*": [{"sleep": 0.05, "progress": ["reading"], "tool_calls": 2}]}`. Unset: every
attempt succeeds at once.
"""

from __future__ import annotations

import json
import os

from devteam.domain.enums import AgentType
from tests.fakes.agents import ScriptBook, ScriptedAgent, Step

SCRIPT_VARIABLE = "DEVTEAM_TEST_AGENT_SCRIPT"


def agents() -> dict[AgentType, ScriptedAgent]:
    book = ScriptBook()
    for key, steps in json.loads(os.environ.get(SCRIPT_VARIABLE) or "{}").items():
        book.on(key, *(Step(**step) for step in steps))
    return book.agents()
