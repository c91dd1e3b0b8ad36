"""A TeamLeader in a process of its own, with agents that log each start and end.

Crash tests run it, kill it with SIGKILL mid-task, and start it again:

    python -m tests.fakes.team_leader_process

It reads the usual DEVTEAM_* settings (database, Redis, config dir) and
TEST_AGENT_LOG (a file each agent appends JSON lines to) and TEST_AGENT_SLEEP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from devteam.broker.factory import create_broker
from devteam.domain.agents import AgentContext
from devteam.domain.enums import AgentType
from devteam.domain.tasks import TaskResult, TaskSpec
from devteam.observability.logging import configure_logging
from devteam.orchestration.team_leader import TeamLeader
from devteam.settings import load_config, load_settings
from devteam.storage import Database, Store


class LoggingAgent:
    description = "logs every attempt to a file"

    def __init__(self, agent_type: AgentType, log: Path, sleep: float) -> None:
        self.agent_type = agent_type
        self.log = log
        self.sleep = sleep

    def _write(self, spec: TaskSpec, event: str) -> None:
        line = {"key": spec.key, "task": str(spec.id), "attempt": spec.attempt, "event": event}
        with self.log.open("a") as file:
            file.write(json.dumps(line) + "\n")

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        self._write(spec, "start")
        await asyncio.sleep(self.sleep)
        self._write(spec, "end")
        return TaskResult(output={"key": spec.key}, summary="done")


async def main() -> None:
    configure_logging(level="WARNING", fmt="console")
    settings = load_settings()
    config = load_config(settings.config_dir)
    log = Path(os.environ["TEST_AGENT_LOG"])
    sleep = float(os.environ.get("TEST_AGENT_SLEEP", "0.3"))
    store = Store(Database(settings.database_url))
    broker = create_broker(settings.redis_url, prefix=settings.redis_prefix)
    leader = TeamLeader(
        store=store,
        broker=broker,
        config=config.team_leader,
        agents={t: LoggingAgent(t, log, sleep) for t in AgentType},
    )
    await leader.start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await leader.stop(grace=5)
    await broker.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
