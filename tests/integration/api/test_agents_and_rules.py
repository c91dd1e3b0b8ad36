"""`GET /api/v1/agents` and the TeamLeader's rules: read, reload, broadcast to every process."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from devteam.app import create_app
from devteam.broker.channels import CONTROL_CHANNEL
from devteam.domain.agents import AgentContext
from devteam.domain.enums import AgentType, Role
from devteam.domain.tasks import TaskResult, TaskSpec
from devteam.settings import Settings
from tests.auth import JWT_SECRET, add_user, assert_error, bearer, login, security_config
from tests.conftest import REPO
from tests.fakes.agents import ScriptBook, Step


class Report(BaseModel):
    """What the typed test agent hands back."""

    files: list[str]


class TypedAgent:
    agent_type = AgentType.CODEBASE_ANALYZER
    description = "Maps the codebase."
    output_type = Report

    async def execute(self, spec: TaskSpec, context: AgentContext) -> TaskResult:
        return TaskResult(output=Report(files=[]).model_dump())


async def test_agents_with_their_tools_output_schema_and_running_work(
    make_auth_client: Callable[..., Any],
) -> None:
    script = ScriptBook().on("root", Step(block=True))
    team: dict[AgentType, Any] = {**script.agents(), AgentType.CODEBASE_ANALYZER: TypedAgent()}
    async with make_auth_client(executors=True, agents=team, shutdown_grace_s=0.2) as (
        app,
        client,
    ):
        user = await add_user(app, Role.VIEWER)
        viewer = bearer((await login(client, user.username))["access_token"])
        developer = await add_user(app, Role.DEVELOPER)
        headers = bearer((await login(client, developer.username))["access_token"])
        body = {"task": "Build the endpoint", "complexity": 2, "agent_type": "backend"}
        await client.post("/api/v1/tasks", json=body, headers=headers)
        await asyncio.wait_for(script.blocked.wait(), 10)
        response = await client.get("/api/v1/agents", headers=viewer)
    assert response.status_code == 200, response.text
    agents = {a["agent_type"]: a for a in response.json()}
    assert list(agents) == [
        "research", "codebase_analyzer", "frontend", "backend", "reviewer", "delivery"
    ]  # fmt: skip
    analyzer = agents["codebase_analyzer"]
    assert analyzer["description"] == "Maps the codebase."
    assert analyzer["output_schema"]["title"] == "Report"
    assert analyzer["output_schema"]["properties"]["files"]["type"] == "array"
    workspace = next(t for t in analyzer["tools"] if t["server"] == "workspace")
    assert workspace == {
        "server": "workspace",
        "tools": ["python_symbols", "read_file", "search_text", "tree"],
        "enabled": True,
    }
    assert {"server": "workspace", "tools": ["*"], "enabled": True} in agents["backend"]["tools"]
    assert agents["backend"]["output_schema"] is None
    assert agents["backend"]["in_progress"] == 1
    assert agents["research"]["in_progress"] == 0


async def test_the_built_in_agents_are_listed(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        user = await add_user(app, Role.VIEWER)
        headers = bearer((await login(client, user.username))["access_token"])
        response = await client.get("/api/v1/agents", headers=headers)
    assert response.status_code == 200
    agents = {a["agent_type"]: a for a in response.json()}
    assert {t: a["output_schema"]["title"] for t, a in agents.items()} == {
        "research": "ResearchReport",
        "codebase_analyzer": "CodebaseReport",
        "frontend": "CodeChange",
        "backend": "CodeChange",
        "reviewer": "Review",
        "delivery": "Delivery",
    }
    reviewer = {t["server"]: t["tools"] for t in agents["reviewer"]["tools"]}
    assert reviewer == {
        "workspace": ["python_symbols", "read_file", "search_text", "tree"],
        "git": ["git_diff", "git_log", "git_show", "git_status"],
    }
    assert all(a["description"] for a in agents.values())
    servers = {tool["server"] for tool in agents["backend"]["tools"]}
    assert {"workspace", "git"} <= servers


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A copy of the repository's config, for tests that edit it."""
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    return target


def set_max_per_task(config_dir: Path, value: int) -> None:
    path = config_dir / "team_leader.yaml"
    text = path.read_text()
    old = "  max_per_task: 5"
    assert old in text
    path.write_text(text.replace(old, f"  max_per_task: {value}"))


async def test_read_and_reload_the_rules(
    config_dir: Path, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(config_dir=config_dir) as (app, client):
        user = await add_user(app, Role.OPERATOR)
        headers = bearer((await login(client, user.username))["access_token"])
        before = (await client.get("/api/v1/team-leader/rules", headers=headers)).json()
        set_max_per_task(config_dir, 4)
        reloaded = await client.post("/api/v1/team-leader/rules/reload", headers=headers)
        (config_dir / "team_leader.yaml").write_text("concurrency:\n  global: 0\n")
        refused = await client.post("/api/v1/team-leader/rules/reload", headers=headers)
        after = (await client.get("/api/v1/team-leader/rules", headers=headers)).json()
        in_force = app.state.services.team_leader.config()
        async with app.state.services.store.read() as tx:
            audited = [e.outcome.value for e in await tx.audit.list(action="rules.reload")]
    names = [rule["name"] for rule in before["policy"]]
    assert names[:2] == ["HonourCancellation", "AllowOnlyValidMoves"]
    assert "WaitForDependencies" in names
    wait = before["policy"][names.index("WaitForDependencies")]
    assert (wait["from"], wait["to"]) == (["delegated", "pending"], ["delegated", "in_progress"])
    assert wait["description"].startswith("A subtask may start only when")
    assert before["config"]["complexity"]["max_per_task"] == 5
    assert before["config"]["concurrency"]["global"] == 10
    assert reloaded.status_code == 200, reloaded.text
    assert reloaded.json()["config"]["complexity"]["max_per_task"] == 4
    assert_error(refused, 422, "validation_error")
    message = refused.json()["error"]["message"]
    assert "team_leader.yaml: concurrency.global: Input should be greater than 0" in message
    assert after["config"]["complexity"]["max_per_task"] == 4, "the old rules stay"
    assert in_force.complexity.max_per_task == 4
    assert audited == ["failure", "success"]


@pytest.mark.postgres
@pytest.mark.redis
async def test_a_reload_reaches_every_process(
    config_dir: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., Any],
) -> None:
    """Two processes on one database and Redis (here two apps): a reload in one reaches both."""
    settings = make_settings(
        database_url=postgres_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        config_dir=config_dir,
        jwt_secret=JWT_SECRET,
    )
    first = create_app(settings, security_config(), executors=False)
    second = create_app(settings, security_config(), executors=False)
    async with make_client(first) as (_, client), make_client(second):
        other = second.state.services
        heard = asyncio.Event()
        # Registered after the second app's TeamLeader, so it runs after that handler.
        subscription = await other.broker.pubsub.subscribe(
            CONTROL_CHANNEL,
            lambda raw: heard.set() if json.loads(raw)["type"] == "reload_rules" else None,
        )
        try:
            user = await add_user(first, Role.OPERATOR)
            headers = bearer((await login(client, user.username))["access_token"])
            set_max_per_task(config_dir, 3)
            response = await client.post("/api/v1/team-leader/rules/reload", headers=headers)
            await asyncio.wait_for(heard.wait(), 10)
        finally:
            await subscription.close()
        assert response.status_code == 200, response.text
        assert other.team_leader.config().complexity.max_per_task == 3
