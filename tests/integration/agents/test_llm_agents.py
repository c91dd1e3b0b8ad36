"""Agents on an LLM that speaks the OpenAI protocol over HTTP: the fake one on loopback.

Requests go through pydantic-ai's `OpenAIChatModel` and the `openai` client, and
through our retrying, rate-limiting and metering wrappers.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import REGISTRY

from devteam.agents.prompts import prompt_version
from devteam.agents.ratelimit import ProviderRateLimit
from devteam.broker.memory import MemoryBroker
from devteam.broker.protocol import Broker
from devteam.broker.redis import RedisBroker
from devteam.domain.agents import AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.tasks import TaskResult, Usage
from devteam.orchestration.planning import Planner
from tests.factories import make_task
from tests.fakes.llm import (
    FakeLLM,
    HttpError,
    Text,
    call,
    calls,
    malformed,
    output,
    rate_limited,
    server_error,
)
from tests.integration.agents.conftest import (
    FAKE_MODEL,
    REPO,
    MakeTeam,
    RecordingContext,
    app_config,
    make_spec,
)

RESEARCH = "Research agent"
REPORT = {
    "summary": "Serve the version from package metadata at GET /version.",
    "findings": [
        {
            "statement": "Read the version with importlib.metadata.version().",
            "detail": "It is the installed distribution's version, so it never drifts.",
            "sources": [
                {
                    "title": "Python docs: importlib.metadata",
                    "url": "https://docs.python.org/3/library/importlib.metadata.html",
                    "kind": "documentation",
                }
            ],
        }
    ],
    "open_questions": ["Should the commit hash be included?"],
    "confidence": "high",
}


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def llm_labels(outcome: str | None = None) -> dict[str, str]:
    labels = {"model": FAKE_MODEL, "agent_type": "research"}
    return labels | ({"outcome": outcome} if outcome else {})


async def test_research_report_through_the_openai_protocol(
    fake_llm: FakeLLM, make_team: MakeTeam
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(RESEARCH, output(input_tokens=1200, output_tokens=300, **REPORT))
    analysis = TaskResult(
        output={"summary": "WSGI app; routes in app/main.py"},
        summary="routes live in app/main.py",
        output_type="CodebaseReport",
    )
    context = RecordingContext({"analysis": analysis})
    before = {
        "requests": sample("devteam_llm_requests_total", llm_labels("ok")),
        "input": sample("devteam_llm_tokens_total", llm_labels() | {"direction": "input"}),
        "cost": sample("devteam_llm_cost_usd_total", llm_labels()),
    }

    result = await team.run(make_spec(AgentType.RESEARCH, project_id=None), context)

    # The typed report, and what it cost: 1200 in at $1/M, 300 out at $2/M.
    assert result.output_type == "ResearchReport"
    assert result.output["findings"][0]["sources"][0]["kind"] == "documentation"
    assert result.summary == REPORT["summary"]
    assert result.model == FAKE_MODEL
    prompt = (REPO / "system_prompts" / "research_agent.md").read_text()
    assert result.prompt_version == prompt_version(prompt)
    assert result.usage == Usage(
        requests=1, input_tokens=1200, output_tokens=300, tool_calls=0, cost_usd=0.0018
    )
    assert context.usage == result.usage
    # No research server is enabled in the shipped config: the report says so.
    assert result.output["confidence"] == "low"
    assert "No research tool was available" in result.output["open_questions"][-1]

    (request,) = fake_llm.requests_for(RESEARCH)
    assert request.body["model"] == "fake-model"
    assert request.messages[0]["content"] == prompt.strip()
    told = request.text()
    assert "Add a /version endpoint" in told
    assert "routes live in app/main.py" in told  # the result it depends on
    assert "No research tool can be reached" in told
    assert request.tool_names == ["final_result"]

    assert sample("devteam_llm_requests_total", llm_labels("ok")) == before["requests"] + 1
    input_tokens = sample("devteam_llm_tokens_total", llm_labels() | {"direction": "input"})
    assert input_tokens == before["input"] + 1200
    cost = sample("devteam_llm_cost_usd_total", llm_labels())
    assert cost == pytest.approx(before["cost"] + 0.0018)


async def test_429_and_5xx_are_retried_with_backoff(fake_llm: FakeLLM, make_team: MakeTeam) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(
        RESEARCH,
        rate_limited(retry_after=0),
        server_error(500),
        server_error(503),
        output(**REPORT),
    )
    limited = sample("devteam_llm_requests_total", llm_labels("rate_limited"))
    failed = sample("devteam_llm_requests_total", llm_labels("server_error"))

    result = await team.run(make_spec(AgentType.RESEARCH))

    assert [r.status for r in fake_llm.requests] == [429, 500, 503, 200]
    assert result.usage.requests == 1  # failed attempts bring no tokens
    assert sample("devteam_llm_requests_total", llm_labels("rate_limited")) == limited + 1
    assert sample("devteam_llm_requests_total", llm_labels("server_error")) == failed + 2


@pytest.mark.parametrize(
    ("replies", "sent", "message"),
    [
        pytest.param([server_error(502)] * 4, 4, "status_code: 502", id="attempts-exhausted"),
        pytest.param(
            [rate_limited(retry_after=3600)], 1, "status_code: 429", id="long-retry-after"
        ),
        pytest.param(
            [HttpError(status=400, message="bad request")], 1, "status_code: 400", id="refused"
        ),
    ],
)
async def test_a_request_that_cannot_pass_fails_the_attempt(
    fake_llm: FakeLLM, make_team: MakeTeam, replies: list[HttpError], sent: int, message: str
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(RESEARCH, *replies)
    with pytest.raises(AgentFailed) as failed:
        await team.run(make_spec(AgentType.RESEARCH))
    assert failed.value.error_code == "llm_error"
    assert message in failed.value.message
    assert len(fake_llm.requests) == sent


async def test_malformed_output_is_sent_back_to_the_model(
    fake_llm: FakeLLM, make_team: MakeTeam
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(
        RESEARCH,
        malformed(),
        output(summary="A report", findings=[], confidence="certain"),
        output(**REPORT),
    )
    result = await team.run(make_spec(AgentType.RESEARCH))
    assert result.output["summary"] == REPORT["summary"]
    assert result.usage.requests == 3
    second, third = fake_llm.requests[1].text(), fake_llm.requests[2].text()
    assert "Invalid JSON" in second or "json_invalid" in second
    assert "confidence" in third and "'low', 'medium' or 'high'" in third


async def test_output_that_stays_malformed_fails_with_its_usage(
    fake_llm: FakeLLM, make_team: MakeTeam
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    fake_llm.script(RESEARCH, *[malformed()] * 4)
    context = RecordingContext()
    with pytest.raises(AgentFailed) as failed:
        await team.run(make_spec(AgentType.RESEARCH), context)
    assert failed.value.error_code == "llm_error"
    assert failed.value.usage == context.usage
    assert failed.value.usage.requests == 4
    assert failed.value.usage.input_tokens == 400


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        pytest.param(
            {"max_tokens": 1000},
            "token budget exceeded: this attempt used 1520 tokens and the task's budget had 1000",
            id="tokens",
        ),
        pytest.param(
            {"max_cost_usd": 0.001},
            "cost budget exceeded: this attempt spent $0.0015 and the task's budget had $0.0010",
            id="cost",
        ),
    ],
)
async def test_a_budget_stops_the_attempt(
    fake_llm: FakeLLM, make_team: MakeTeam, budget: dict[str, Any], message: str
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    # 1500 input tokens at $1/M and 20 output tokens at $2/M: $0.00154.
    fake_llm.script(RESEARCH, Text(content="Let me think.", input_tokens=1500), output(**REPORT))
    with pytest.raises(AgentFailed) as failed:
        await team.run(make_spec(AgentType.RESEARCH, **budget))
    assert failed.value.error_code == "budget_exceeded"
    assert failed.value.message.startswith(message)
    assert failed.value.usage.total_tokens == 1520
    assert len(fake_llm.requests) == 1


async def test_no_budget_left_fails_before_any_request(
    fake_llm: FakeLLM, make_team: MakeTeam
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    with pytest.raises(AgentFailed, match="token budget exhausted") as failed:
        await team.run(make_spec(AgentType.RESEARCH, max_tokens=0))
    assert failed.value.error_code == "budget_exceeded"
    assert fake_llm.requests == []


async def test_an_agent_that_never_answers_is_stuck(fake_llm: FakeLLM, make_team: MakeTeam) -> None:
    team = make_team(
        llm_url=fake_llm.base_url, agents={"limits": {"research": {"max_requests": 2}}}
    )
    fake_llm.script(RESEARCH, Text(content="Hmm."), Text(content="Hmm."), Text(content="Hmm."))
    with pytest.raises(AgentFailed) as failed:
        await team.run(make_spec(AgentType.RESEARCH))
    assert failed.value.error_code == "agent_stuck"
    assert "no answer after 2 model requests" in failed.value.message
    assert len(fake_llm.requests) == 2


async def test_the_same_tool_call_repeated_stops_the_attempt(
    fake_llm: FakeLLM, make_team: MakeTeam, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "versions.md").write_text("Use importlib.metadata.\n")
    # A research server of fixed root (started once, not per task), granted to research.
    shipped = app_config().mcp_servers.servers["workspace"].model_dump()
    server = shipped | {
        "transport": {
            "type": "stdio",
            "command": "{python}",
            "args": ["-m", "devteam", "mcp", "workspace", "--root", str(notes)],
        },
        "agents": {"research": ["read_file"]},
    }
    team = make_team(llm_url=fake_llm.base_url, mcp_servers={"servers": {"notes": server}})
    read = call("read_file", path="versions.md")
    fake_llm.script(RESEARCH, calls(read), calls(read), calls(read), output(**REPORT))
    context = RecordingContext()

    with pytest.raises(AgentFailed) as failed:
        await team.run(make_spec(AgentType.RESEARCH), context)

    assert failed.value.error_code == "agent_stuck"
    assert "repeated 3 times: notes.read_file" in failed.value.message
    assert [(e["tool"], e["outcome"]) for e in context.tool_events] == [
        ("read_file", "ok"),
        ("read_file", "ok"),
        ("read_file", "stuck"),
    ]
    assert context.tool_events[0]["arguments"] == {"path": "versions.md"}
    assert failed.value.usage.tool_calls == 2
    assert failed.value.usage.requests == 3
    assert fake_llm.requests[0].tool_names == ["final_result", "read_file"]
    assert "Use importlib.metadata." in fake_llm.requests[1].text()


@pytest.mark.parametrize("agent_type", [AgentType.RESEARCH, AgentType.BACKEND, AgentType.FRONTEND])
async def test_agents_that_need_an_llm_fail_at_once_without_one(
    make_team: MakeTeam, agent_type: AgentType
) -> None:
    team = make_team()
    started = time.monotonic()
    with pytest.raises(AgentFailed, match="needs an LLM and none is configured") as failed:
        await team.run(make_spec(agent_type))
    assert failed.value.error_code == "llm_not_configured"
    assert time.monotonic() - started < 1.0


async def test_an_edited_prompt_is_used_from_the_next_task_on(
    fake_llm: FakeLLM, make_team: MakeTeam, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(REPO / "system_prompts", prompts)
    team = make_team(llm_url=fake_llm.base_url, settings={"prompts_dir": prompts})
    fake_llm.script(RESEARCH, output(**REPORT))
    first = await team.run(make_spec(AgentType.RESEARCH))

    edited = (prompts / "research_agent.md").read_text() + "\nAlways cite the standard.\n"
    (prompts / "research_agent.md").write_text(edited)
    fake_llm.script(RESEARCH, output(**REPORT))
    second = await team.run(make_spec(AgentType.RESEARCH))

    assert first.prompt_version != second.prompt_version == prompt_version(edited)
    assert fake_llm.requests[1].messages[0]["content"] == edited.strip()

    (prompts / "research_agent.md").unlink()
    with pytest.raises(AgentFailed, match="cannot read the system prompt") as failed:
        await team.run(make_spec(AgentType.RESEARCH))
    assert failed.value.error_code == "agent_unavailable"


async def test_the_planner_plans_with_the_configured_model(
    fake_llm: FakeLLM, make_team: MakeTeam
) -> None:
    team = make_team(llm_url=fake_llm.base_url)
    plan = {
        "subtasks": [
            {
                "key": "analysis",
                "agent_type": "codebase_analyzer",
                "task": "Find the routes",
                "complexity": 2,
            },
            {
                "key": "api",
                "agent_type": "backend",
                "task": "Add GET /version with a test",
                "complexity": 4,
            },
        ],
        "rationale": "Look before changing.",
    }
    fake_llm.script("TeamLeader: planning", output(**plan))
    planner = Planner(team.llm.planner_model, REPO / "system_prompts" / "team_leader.md")
    root = make_task(make_spec(AgentType.BACKEND).created_by, complexity=8)

    outcome = await planner.plan(root, team.config.team_leader)

    assert outcome.source == "llm"
    assert [s.key for s in outcome.subtasks] == ["analysis", "api", "review"]
    assert outcome.usage.requests == 1
    (request,) = fake_llm.requests
    assert request.messages[0]["content"].startswith("# TeamLeader: planning")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def two_processes(request: pytest.FixtureRequest) -> Any:
    """Two brokers as two processes have them: the same one, or two Redis clients."""
    if request.param == "memory":
        broker = MemoryBroker()
        yield broker, broker
        await broker.close()
        return
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    first, second = RedisBroker(url, prefix=prefix), RedisBroker(url, prefix=prefix)
    yield first, second
    await first.close()
    await second.close()


async def test_the_provider_rate_limit_is_shared_by_processes(
    fake_llm: FakeLLM, make_team: MakeTeam, two_processes: tuple[Broker, Broker]
) -> None:
    one, two = two_processes
    limit = {"agents": {"rate_limit": "3/minute"}}
    first = make_team(llm_url=fake_llm.base_url, broker=one, **limit)
    second = make_team(llm_url=fake_llm.base_url, broker=two, **limit)
    fake_llm.script(RESEARCH, *[output(**REPORT)] * 3)
    await first.run(make_spec(AgentType.RESEARCH))
    await first.run(make_spec(AgentType.RESEARCH))
    await second.run(make_spec(AgentType.RESEARCH))

    # Both processes' requests count in one window: a fourth would have to wait.
    limiter = MovingWindowRateLimiter(two.rate_limit_storage())
    stats = await limiter.get_window_stats(parse("3/minute"), "llm", fake_llm.base_url)
    assert stats.remaining == 0


async def test_a_request_over_the_rate_limit_waits_for_room() -> None:
    broker = MemoryBroker()
    try:
        limit = ProviderRateLimit(broker.rate_limit_storage(), "2/second", "provider")
        waits = [await limit.acquire() for _ in range(3)]
    finally:
        await broker.close()
    assert waits[0] < 0.1 and waits[1] < 0.1
    assert waits[2] > 0.5
