"""A root task "add an endpoint" runs research -> analysis -> backend + frontend, end to end.

The whole service as `devteam serve` opens it (`open_services`: storage, broker,
MCP, the LLM layer, the agents, the TeamLeader with its executors), on SQLite
with the in-process broker and on Postgres with Redis. The LLM is the fake
OpenAI-compatible server; the coders it scripts write files through the
workspace MCP server in their own worktrees of a sample project, and their
results hold real diffs that `git apply --check` accepts on the base commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from devteam.broker.channels import events_channel
from devteam.domain.enums import TERMINAL_STATUSES, Role, TaskStatus
from devteam.domain.events import EventType
from devteam.domain.tasks import Task, TaskRequest, Usage
from devteam.services import Services, open_services
from devteam.settings import Settings
from tests import servers
from tests.factories import create_user
from tests.fakes.llm import FakeLLM, call, calls, output
from tests.integration.agents.conftest import FAKE_MODEL, FAST_AGENTS, app_config
from tests.sample_project import (
    VERSION_PAGE_PATCH,
    VERSION_PAGE_SCRIPT,
    VERSION_ROUTE_PATCH,
    VERSION_TEST,
    git,
    make_project,
)

pytestmark = pytest.mark.slow

PLAN = [
    {
        "key": "research",
        "agent_type": "research",
        "task": "Research how a small WSGI app should expose its version over HTTP",
        "complexity": 1,
    },
    {
        "key": "analysis",
        "agent_type": "codebase_analyzer",
        "task": "Find where the shop's HTTP routes, page scripts and tests live",
        "complexity": 1,
    },
    {
        "key": "api",
        "agent_type": "backend",
        "task": "Add GET /version returning the app version as JSON, with a test",
        "complexity": 3,
        "depends_on": ["research", "analysis"],
    },
    {
        "key": "page",
        "agent_type": "frontend",
        "task": "Show the app version on the page, fetched from GET /version",
        "complexity": 2,
        "depends_on": ["research", "analysis"],
    },
]

RESEARCH_REPORT = {
    "summary": "Expose GET /version returning {'version': ...} as JSON with status 200.",
    "findings": [
        {
            "statement": "Return the version as a JSON object, not bare text.",
            "detail": "A JSON object can grow (commit, build date) without breaking clients.",
            "sources": [{"title": "RFC 8259: JSON", "kind": "model_knowledge"}],
        }
    ],
    "open_questions": [],
    "confidence": "high",
}
NARRATIVE = {
    "summary": "A WSGI shop app: routes in app/main.py, a static page, pytest tests.",
    "narrative": "app/main.py registers handlers with @route into ROUTES; application() "
    "dispatches on PATH_INFO. static/ holds the page and its scripts.",
    "task_notes": "Add the handler next to health() with @route('/version'); test it the "
    "way tests/test_health.py does; load the page script from static/index.html.",
    "relevant_files": [{"path": "app/main.py", "reason": "the route table"}],
    "risks": ["The version literal can drift from pyproject.toml."],
}

BackendSettings = dict[str, Any]


@pytest.fixture(
    params=[
        pytest.param(("sqlite", "memory"), id="sqlite+memory"),
        pytest.param(
            ("postgres", "redis"),
            id="postgres+redis",
            marks=[pytest.mark.postgres, pytest.mark.redis],
        ),
    ]
)
def backend_settings(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> BackendSettings:
    storage, broker = request.param
    if storage == "sqlite":
        values: BackendSettings = {
            "database_url": servers.copy_sqlite(sqlite_template, tmp_path / "devteam.db")
        }
    else:
        url = request.getfixturevalue("postgres_url")
        servers.truncate_postgres(url)
        values = {"database_url": url}
    if broker == "redis":
        values["redis_url"] = request.getfixturevalue("redis_url")
        values["redis_prefix"] = request.getfixturevalue("redis_prefix")
    return values


def script(llm: FakeLLM) -> None:
    llm.script("Research agent", output(**RESEARCH_REPORT))
    llm.script(
        "Codebase analyzer",
        calls(call("read_file", path="app/main.py")),
        output(**NARRATIVE),
    )
    llm.script(
        "Backend coder",
        calls(call("read_file", path="app/main.py")),
        calls(
            call("apply_patch", diff=VERSION_ROUTE_PATCH),
            call("write_file", path="tests/test_version.py", content=VERSION_TEST),
        ),
        output(summary="Added GET /version with a test.", follow_ups=[]),
    )
    llm.script(
        "Frontend coder",
        calls(
            call("write_file", path="static/version.js", content=VERSION_PAGE_SCRIPT),
            call("apply_patch", diff=VERSION_PAGE_PATCH),
        ),
        output(summary="The page loads version.js, which fetches GET /version.", follow_ups=[]),
    )


async def wait_until_done(services: Services, root_id: UUID, timeout: float = 50.0) -> Task:
    changed = asyncio.Event()
    subscription = await services.broker.pubsub.subscribe(
        events_channel(root_id), lambda _: changed.set()
    )
    try:
        async with asyncio.timeout(timeout):
            while True:
                async with services.store.read() as tx:
                    task = await tx.tasks.get(root_id)
                assert task is not None
                if task.status in TERMINAL_STATUSES:
                    return task
                changed.clear()
                # Re-read after each event; the poll bounds a missed wake-up.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 1.0)
    finally:
        await subscription.close()


def applies_to(repo: Path, diff: str, where: Path) -> None:
    where.write_text(diff)
    git(repo, "apply", "--check", str(where))


async def test_add_an_endpoint_from_research_to_code(
    fake_llm: FakeLLM,
    make_settings: Callable[..., Settings],
    backend_settings: BackendSettings,
    tmp_path: Path,
) -> None:
    workspaces = tmp_path / "workspaces"
    repo = make_project(workspaces / "shop")
    base = git(repo, "rev-parse", "HEAD").strip()
    settings = make_settings(
        **backend_settings,
        llm_model=FAKE_MODEL,
        llm_base_url=fake_llm.base_url,
        workspaces_root=workspaces,
        migrate_on_start=False,
    )
    config = app_config(
        agents=FAST_AGENTS,
        team_leader={"leases": {"duration_s": 30.0, "heartbeat_s": 2.0}},
    )
    script(fake_llm)

    async with open_services(settings, config, executors=True) as services:
        user = await create_user(services.store, role=Role.DEVELOPER)
        submission = await services.team_leader.submit(
            TaskRequest(
                task="Add a /version endpoint to the shop and show the version on its page",
                complexity=7,
                project_id="shop",
                subtasks=PLAN,  # type: ignore[arg-type]
            ),
            user,
        )
        root = await wait_until_done(services, submission.task.id)
        async with services.store.read() as tx:
            children = {c.key: c for c in await tx.tasks.children(root.id)}
            events = await tx.events.list_after(root.id, 0, limit=10_000)

    assert root.status == TaskStatus.COMPLETED, root.error
    assert {k: c.status for k, c in children.items()} == dict.fromkeys(
        ["research", "analysis", "api", "page"], TaskStatus.COMPLETED
    )
    results = {key: child.result for key, child in children.items()}
    assert all(r is not None for r in results.values())
    research, analysis, api, page = (
        results[k] or {} for k in ("research", "analysis", "api", "page")
    )

    # Research had no tool to check its findings with, and says so.
    assert research["output_type"] == "ResearchReport"
    assert research["output"]["confidence"] == "low"
    assert research["model"] == FAKE_MODEL and research["prompt_version"].startswith("sha256:")

    # The analysis is the structural scan of the project, with the model's narrative.
    report = analysis["output"]
    assert report["analysis"] == "structural+llm"
    assert report["narrative"] == NARRATIVE["narrative"]
    assert report["languages"][0]["language"] == "Python"
    assert {"name": "shop", "kind": "console_script", "target": "app.main:serve",
            "defined_in": "pyproject.toml"} in report["entry_points"]  # fmt: skip
    assert {(d["name"], d["scope"]) for d in report["dependencies"]} >= {
        ("gunicorn", "runtime"),
        ("pytest", "dev"),
    }
    assert report["test_layout"]["directories"] == ["tests"]
    assert report["relevant_files"][0]["path"] == "app/main.py"
    assert "The version literal can drift from pyproject.toml." in report["risks"]

    # Each coder's change is on its own branch, and applies to the base commit.
    for key, change in (("api", api["output"]), ("page", page["output"])):
        assert change["base_commit"] == base
        assert change["branch"] == f"devteam/{children[key].id}"
        assert git(repo, "rev-parse", change["branch"]).strip() == change["head_commit"]
        applies_to(repo, change["diff"], tmp_path / f"{key}.diff")
    assert {f["path"] for f in api["output"]["files_changed"]} == {
        "app/main.py",
        "tests/test_version.py",
    }
    assert api["output"]["tests_added"] == ["tests/test_version.py"]
    assert {f["path"] for f in page["output"]["files_changed"]} == {
        "static/index.html",
        "static/version.js",
    }
    # The user's checkout is untouched, and no worktree is left behind.
    assert git(repo, "branch", "--show-current") == "main\n"
    assert git(repo, "rev-parse", "HEAD").strip() == base
    assert git(repo, "status", "--porcelain") == ""
    assert list((workspaces / ".worktrees").iterdir()) == []

    # The coders worked from the research and the analysis.
    told = fake_llm.requests_for("Backend coder")[0].text()
    assert RESEARCH_REPORT["summary"] in told
    assert NARRATIVE["task_notes"] in told

    # Tool calls were reported live, and usage adds up on the root.
    tool_calls = [e for e in events if e.type == EventType.TOOL_CALL]
    assert {e.subtask_id for e in tool_calls} >= {children["api"].id, children["page"].id}
    assert sum((c.usage for c in children.values()), Usage()) == root.usage
    assert root.usage.requests == 1 + 2 + 3 + 2  # research, analysis, api, page
    # 100 input tokens at $1/M and 20 output tokens at $2/M per request.
    assert root.usage.cost_usd == pytest.approx(8 * (100 * 1.0 + 20 * 2.0) / 1e6)
    assert root.usage.tool_calls == sum(c.usage.tool_calls for c in children.values())
