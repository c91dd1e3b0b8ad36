"""Drive `fault_server.py` from a test: its plan, its call log, its configuration."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("fault_server.py")


class FaultPlan:
    """The state folder of one fault server (it survives the server's restarts)."""

    def __init__(self, state: Path, name: str = "fault") -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.state = state
        self.name = name

    def set(self, *actions: str) -> None:
        """The actions of the next `work` calls, in order; afterwards every call is `ok`."""
        (self.state / "plan.json").write_text(json.dumps(list(actions)))

    def calls(self) -> list[str]:
        """The action of every `work` call the server received, in order."""
        log = self.state / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [line.split(" ", 1)[1] for line in lines]

    def pids(self) -> list[int]:
        """The process that received each `work` call."""
        log = self.state / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [int(line.split(" ", 1)[0]) for line in lines]

    def server_config(self, *, startup_delay: float = 0.0, **overrides: Any) -> dict[str, Any]:
        """A `servers.<name>` entry of mcp_servers.yaml running this fault server over stdio."""
        args = [str(SCRIPT), "--state", str(self.state), "--name", self.name]
        config: dict[str, Any] = {
            "transport": {
                "type": "stdio",
                "command": sys.executable,
                "args": [*args, "--startup-delay", str(startup_delay)],
            },
            "connect_timeout_s": 30,
            "call_timeout_s": 10,
            "retry": {"max_attempts": 1},
        }
        config.update(overrides)
        return config
