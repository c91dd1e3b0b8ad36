"""monitoring/ checked against a real Prometheus scraping a real deployment under load.

The deployment is the production layout on one machine: `devteam serve
--no-executors` (the API) and `devteam worker`, on Postgres and Redis, with the
real agents reaching a fake OpenAI-compatible LLM and the real MCP servers
(DevTeam's workspace server and mcp-server-git) on a sample project. Prometheus
runs the shipped `prometheus.yml` (its jobs, paths and bearer token; only the
targets point at loopback) with the shipped alert rules.

A small workload then exercises what the dashboards show: logins (some refused
by the rate limit), tasks over REST and WebSocket, a plan with a dependency, an
LLM error retried, an attempt failed and retried, MCP tool calls (one a tool
error), a task stopped by its token budget, a WebSocket whose session ends (the
server drops it at its next heartbeat). It runs twice, with a scrape in between,
so counters move and rates are real.

Then every panel query of every dashboard must parse and return data (at least
one finite value over the run), every metric it reads must be exported, and
every alert expression must parse, evaluate, and load as a healthy rule.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml

from devteam.domain.enums import Role
from devteam.security.accounts import Accounts
from devteam.security.audit import Auditor
from devteam.security.passwords import Passwords
from devteam.storage import Database, Store
from tests import prometheus, servers
from tests.auth import FAST_PASSWORDS, JWT_SECRET, PASSWORD
from tests.fakes.llm import FakeLLM, HttpError, call, calls, output, server_error
from tests.live import events_until_end, receive, send
from tests.processes import REPO, Process, clean_env, free_port
from tests.sample_project import make_project

pytestmark = pytest.mark.prometheus

FAKE_MODEL = "openai-chat:fake-model"
METRICS_TOKEN = "metrics-token-for-the-test"

PLAN = [
    {"key": "look", "agent_type": "research", "task": "Research the options", "complexity": 1},
    {
        "key": "scan",
        "agent_type": "codebase_analyzer",
        "task": "Find where the shop's HTTP routes live",
        "complexity": 1,
        "depends_on": ["look"],
    },
]
RESEARCH_REPORT = {
    "summary": "Expose GET /version returning {'version': ...} as JSON.",
    "findings": [
        {
            "statement": "Return the version as a JSON object.",
            "detail": "An object can grow without breaking clients.",
            "sources": [{"title": "RFC 8259", "kind": "model_knowledge"}],
        }
    ],
    "open_questions": [],
    "confidence": "high",
}
NARRATIVE = {
    "summary": "A WSGI shop app with routes in app/main.py.",
    "narrative": "app/main.py registers handlers with @route.",
    "task_notes": "Add the handler next to health().",
    "relevant_files": [{"path": "app/main.py", "reason": "the route table"}],
    "risks": [],
}


def script_round(llm: FakeLLM) -> None:
    """The LLM's replies for one round of the workload (the tasks run one after another)."""
    llm.script(
        "Research agent",
        # The plan's research: a 500 the LLM layer retries, then a 400 that fails
        # the attempt (the TeamLeader retries it), then the report.
        server_error(500),
        HttpError(status=400, message="the fake server refuses this request"),
        output(**RESEARCH_REPORT),
        # The budgeted task: one answer of 120 tokens, over its budget of 50.
        output(**RESEARCH_REPORT),
    )
    llm.script(
        "Codebase analyzer",
        calls(call("read_file", path="app/main.py"), call("read_file", path="missing.py")),
        output(**NARRATIVE),
    )


def write_config(target: Path) -> Path:
    """The repository's config, with fast hashing, short intervals and the fake model's price."""
    shutil.copytree(REPO / "config", target)

    def edit(name: str, changes: dict[str, Any]) -> None:
        path = target / name
        document = yaml.safe_load(path.read_text())
        for section, values in changes.items():
            document[section] = {**(document.get(section) or {}), **values}
        path.write_text(yaml.safe_dump(document))

    edit(
        "security.yaml",
        {
            "passwords": FAST_PASSWORDS.model_dump(),
            "rate_limits": {
                "login_failures_per_username": "2/minute",
                "login_per_ip": "100/minute",
            },
        },
    )
    edit(
        "agents.yaml",
        {
            "prices": {FAKE_MODEL: {"input": 1.0, "output": 2.0}},
            "retry": {"initial_backoff_s": 0.05, "max_backoff_s": 0.1, "jitter_s": 0.0},
        },
    )
    edit(
        "team_leader.yaml",
        {
            "retry": {"initial_interval_s": 0.5},
            "leases": {"duration_s": 10.0, "heartbeat_s": 1.0, "recovery_interval_s": 1.0},
        },
    )
    return target


@dataclass
class Deployment:
    api: Process
    worker: Process
    prometheus: prometheus.Prometheus
    llm: FakeLLM
    database_url: str


@pytest.fixture
def deployment(
    tmp_path: Path,
    fake_llm: FakeLLM,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
) -> Iterator[Deployment]:
    servers.truncate_postgres(postgres_url)
    make_project(tmp_path / "workspaces" / "shop")
    env = clean_env(
        DEVTEAM_CONFIG_DIR=str(write_config(tmp_path / "config")),
        DEVTEAM_PROMPTS_DIR=str(REPO / "system_prompts"),
        DEVTEAM_WORKSPACES_ROOT=str(tmp_path / "workspaces"),
        DEVTEAM_DATABASE_URL=postgres_url,
        DEVTEAM_REDIS_URL=redis_url,
        DEVTEAM_REDIS_PREFIX=redis_prefix,
        DEVTEAM_MIGRATE_ON_START="false",
        DEVTEAM_JWT_SECRET=JWT_SECRET,
        DEVTEAM_METRICS_TOKEN=METRICS_TOKEN,
        DEVTEAM_LLM_MODEL=FAKE_MODEL,
        DEVTEAM_LLM_BASE_URL=fake_llm.base_url,
        DEVTEAM_LOG_LEVEL="WARNING",
        DEVTEAM_SHUTDOWN_GRACE_S="2",
        DEVTEAM_WS_HEARTBEAT_S="1",
    )
    token_file = tmp_path / "metrics_token"
    token_file.write_text(METRICS_TOKEN)
    api = Process("api", ["serve", "--no-executors"], env, tmp_path / "api.log", cwd=tmp_path)
    worker = Process("worker", ["worker"], env, tmp_path / "worker.log", cwd=tmp_path)
    started: list[Process] = [api, worker]
    config = prometheus.pointed_at(
        {"devteam-api": [api.target], "devteam-worker": [worker.target]},
        credentials_file=token_file,
        rule_files=[prometheus.ALERT_RULES],
    )
    try:
        with prometheus.running_prometheus(config, tmp_path / "prometheus", free_port()) as prom:
            api.wait_ready()
            worker.wait_ready()
            yield Deployment(api, worker, prom, fake_llm, postgres_url)
    finally:
        for process in reversed(started):
            process.stop()


async def create_user(database_url: str, username: str, role: Role) -> None:
    store = Store(Database(database_url))
    try:
        accounts = Accounts(store, Passwords(FAST_PASSWORDS))
        await accounts.create(username, PASSWORD, role, auditor=Auditor(store), actor="test")
    finally:
        await store.close()


@asynccontextmanager
async def websocket(port: int, token: str) -> AsyncIterator[websockets.ClientConnection]:
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/api/v1/ws",
        additional_headers={"Authorization": f"Bearer {token}"},
        proxy=None,
        open_timeout=5,
    ) as socket:
        yield socket


async def run_round(deployment: Deployment, http: httpx.AsyncClient, token: str) -> None:
    """One round of the workload; it returns when its tasks have ended."""
    script_round(deployment.llm)
    port = deployment.api.port
    # Wrong passwords for one username, past its limit (2/minute): 401s, then 429s.
    refused = [
        (await http.post("/api/v1/auth/token", data={"username": "mallory", "password": "no"}))
        for _ in range(3)
    ]
    assert refused[-1].status_code == 429, refused[-1].text
    # An unknown route and a validation error.
    assert (await http.get("/api/v1/nowhere")).status_code == 404
    assert (await http.post("/api/v1/tasks", json={"task": "short"})).status_code == 422

    async with websocket(port, token) as socket:
        submitted = await http.post(
            "/api/v1/tasks",
            json={
                "task": "Plan the version endpoint of the shop",
                "complexity": 2,
                "project_id": "shop",
                "subtasks": PLAN,
            },
        )
        assert submitted.status_code == 202, submitted.text
        plan_id = submitted.json()["id"]
        await send(socket, type="subscribe", task_id=plan_id, after=0)
        assert (await receive(socket))["type"] == "subscribed"
        events = await events_until_end(socket, plan_id, timeout=60)
        assert events[-1]["type"] == "task.completed", events[-1]

        budgeted = await http.post(
            "/api/v1/tasks",
            json={
                "task": "Research how to expose the version",
                "agent_type": "research",
                "complexity": 1,
                "budget": {"max_tokens": 50},
            },
        )
        assert budgeted.status_code == 202, budgeted.text
        budget_id = budgeted.json()["id"]
        await send(socket, type="subscribe", task_id=budget_id, after=0)
        assert (await receive(socket))["type"] == "subscribed"
        events = await events_until_end(socket, budget_id, timeout=60)
        assert events[-1]["type"] == "task.failed", events[-1]

    assert (await http.get(f"/api/v1/tasks/{plan_id}")).json()["status"] == "completed"
    failed = (await http.get(f"/api/v1/tasks/{budget_id}")).json()
    assert failed["error"]["code"] == "budget_exceeded", failed
    assert (await http.get("/api/v1/tasks")).status_code == 200
    assert (await http.get("/api/v1/mcp/servers")).status_code == 200

    # A session that ends while its WebSocket is open: the next heartbeat closes it (4401).
    other = await http.post("/api/v1/auth/token", data={"username": "bob", "password": PASSWORD})
    assert other.status_code == 200, other.text
    other_token = other.json()["access_token"]
    async with websocket(port, other_token) as socket:
        logout = await http.post(
            "/api/v1/auth/logout", headers={"Authorization": f"Bearer {other_token}"}
        )
        assert logout.status_code == 204, logout.text
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(socket, timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # The LLM's script was followed to the end: the retries happened as planned.
    assert deployment.llm.remaining("Research agent") == 0
    assert deployment.llm.remaining("Codebase analyzer") == 0


async def scraped_after(prom: prometheus.Prometheus, moment: float, jobs: int = 2) -> None:
    """Wait until Prometheus has scraped every target after `moment` (Unix time)."""
    async with asyncio.timeout(30):
        while True:
            result = prom.api("query", query=f'timestamp(up{{job=~"devteam-.*"}} == 1) > {moment}')
            if len(result["result"]) == jobs:
                return
            await asyncio.sleep(0.2)  # Prometheus offers no scrape event to await


async def rules_after(prom: prometheus.Prometheus, moment: float) -> dict[str, Any]:
    """The alerting rules by name, once every one was evaluated after `moment`."""
    async with asyncio.timeout(30):
        while True:
            rules = {r["name"]: r for g in prom.api("rules")["groups"] for r in g["rules"]}
            evaluated = [
                datetime.fromisoformat(r["lastEvaluation"]).timestamp() for r in rules.values()
            ]
            if evaluated and min(evaluated) > moment:
                return rules
            await asyncio.sleep(0.2)  # Prometheus offers no evaluation event to await


def finite_values(answer: dict[str, Any]) -> list[float]:
    values = [float(v) for series in answer["data"]["result"] for _, v in series["values"]]
    return [v for v in values if math.isfinite(v)]


@pytest.mark.parametrize("shipped", prometheus.SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_promtool_accepts_the_config(shipped: Path, tmp_path: Path) -> None:
    # The token file is the container's; the rest is checked as shipped, rules included.
    token = tmp_path / "metrics_token"
    token.write_text("")
    config = yaml.safe_load(shipped.read_text())
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(prometheus.ALERT_RULES, tmp_path / "alerts.yml")
    checked = prometheus.promtool("check", "config", tmp_path / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_promtool_accepts_the_alert_rules() -> None:
    checked = prometheus.promtool("check", "rules", prometheus.ALERT_RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(prometheus.alert_rules())} rules found" in checked.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = prometheus.promtool("test", "rules", prometheus.ALERT_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(150)
async def test_dashboards_and_alerts_on_a_real_prometheus(deployment: Deployment) -> None:
    prom = deployment.prometheus
    await create_user(deployment.database_url, "ada", Role.OPERATOR)
    await create_user(deployment.database_url, "bob", Role.DEVELOPER)
    started = time.time()
    async with httpx.AsyncClient(base_url=deployment.api.url, timeout=30) as http:
        login = await http.post(
            "/api/v1/auth/token", data={"username": "ada", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        # Two rounds with a scrape between them, so every counter moves between scrapes.
        await scraped_after(prom, started)
        await run_round(deployment, http, token)
        await scraped_after(prom, time.time())
        await run_round(deployment, http, token)
    await scraped_after(prom, time.time() + 1)
    ended = time.time()

    # Both targets were scraped with the token, under the shipped job names.
    targets = prom.api("targets")["activeTargets"]
    assert {(t["labels"]["job"], t["health"]) for t in targets} == {
        ("devteam-api", "up"),
        ("devteam-worker", "up"),
    }, targets

    problems: list[str] = []
    exported = {s["__name__"] for s in prom.api("series", **{"match[]": '{__name__=~".+"}'})}
    queries = [q for path in prometheus.DASHBOARDS for q in prometheus.panel_queries(path)]
    variables = [q for path in prometheus.DASHBOARDS for q in prometheus.variable_queries(path)]
    assert len(prometheus.DASHBOARDS) == 4 and queries and variables
    for query in [*queries, *variables]:
        expr = prometheus.substitute(query.expr)
        for name in prometheus.metric_names(expr):
            if not exported & {name, f"{name}_bucket", f"{name}_total"}:
                problems.append(f"{query.id}: {name} is not exported under the workload")
        answer = prom.query_range(expr, started, ended)
        if answer.get("status") != "success":
            problems.append(f"{query.id}: {answer.get('error')} in {expr}")
        elif not finite_values(answer):
            problems.append(f"{query.id}: no data for {expr}")
    assert not problems, "\n".join(problems)

    # The panels read the provisioned datasource.
    uid = yaml.safe_load((prometheus.DATASOURCES / "prometheus.yml").read_text())
    expected = {"type": "prometheus", "uid": uid["datasources"][0]["uid"]}
    for path in prometheus.DASHBOARDS:
        for panel in prometheus.panels(prometheus.load_dashboard(path)):
            assert panel["type"] == "row" or panel["datasource"] == expected, panel["title"]

    # Every alert expression parses and evaluates; every rule loaded and evaluates cleanly.
    for rule in prometheus.alert_rules():
        answer = prom.query(rule["expr"])
        assert answer.get("status") == "success", (rule["alert"], answer)
    loaded = await rules_after(prom, ended)
    assert set(loaded) == {r["alert"] for r in prometheus.alert_rules()}
    assert all(r["health"] == "ok" for r in loaded.values()), loaded
    # The workload stopped tasks by their budget: that alert (no `for`) fires.
    budget_alerts = loaded["DevTeamBudgetsExhausted"]["alerts"]
    assert [a["labels"]["budget"] for a in budget_alerts] == ["tokens"], budget_alerts
    assert budget_alerts[0]["state"] == "firing"
    assert loaded["DevTeamTargetDown"]["alerts"] == []
