"""One OpenTelemetry trace from the HTTP request, across the queue, to the agent and its tools.

A real `devteam serve --no-executors` and a real `devteam worker` on Postgres and
Redis export over OTLP/HTTP to a small receiver on loopback that decodes the
protobuf bodies. The codebase analyzer works on a sample project through the
workspace and git MCP servers, then asks the LLM (the fake OpenAI-compatible
server) for its narrative.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from devteam.orchestration.queue import WorkItem
from tests import servers
from tests.auth import JWT_SECRET, PASSWORD
from tests.e2e.test_scale_out import create_user
from tests.fakes.llm import FakeLLM, output
from tests.processes import Process, clean_env
from tests.sample_project import make_project

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str


class Receiver:
    """An OTLP/HTTP trace receiver: `POST /v1/traces` with protobuf bodies."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.take(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append(
                            Span(
                                service,
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                span.name,
                            )
                        )

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_work_items_carry_the_trace_context() -> None:
    item = WorkItem.decode(
        json.dumps({"k": "run", "t": TRACE_ID[:8] + "-0000-4000-8000-" + "0" * 12,
                    "r": "00000000-0000-4000-8000-000000000000", "a": 1, "p": 5,
                    "tp": TRACEPARENT}).encode()
    )  # fmt: skip
    assert item.traceparent == TRACEPARENT
    assert WorkItem.decode(item.encode()) == item
    # Items queued before tracing existed still decode.
    old = json.loads(item.encode())
    del old["tp"]
    assert WorkItem.decode(json.dumps(old).encode()).traceparent is None


def test_without_an_endpoint_nothing_is_set_up(tmp_path: Path) -> None:
    """No OTLP endpoint: no tracer provider, no exporter, no spans, no trace ids in logs."""
    probe = (
        "import sys\n"
        "from devteam.settings import load_settings, load_config\n"
        "from devteam.observability import tracing\n"
        "settings = load_settings(jwt_secret='x' * 40)\n"
        "from devteam.app import create_app\n"
        "create_app(settings, load_config(settings.config_dir))\n"
        "with tracing.span('x'):\n"
        "    assert tracing.current_traceparent() is None\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace',\n"
        "          'opentelemetry.exporter', 'opentelemetry.instrumentation'))]\n"
        "print(tracing.enabled(), loaded)\n"
    )
    env = clean_env()
    for name in list(env):
        if name.startswith("OTEL_"):
            del env[name]
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False []\n"


async def events_of(url: str, task_id: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(servers.asyncpg_url(url))
    try:
        return list(
            await connection.fetch(
                "SELECT seq, type, trace_id FROM events WHERE task_id = $1 ORDER BY seq",
                task_id,
            )
        )
    finally:
        await connection.close()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(180)
async def test_one_trace_spans_the_api_and_the_worker(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, receiver: Receiver
) -> None:
    await asyncio.to_thread(servers.truncate_postgres, postgres_url)
    llm = await FakeLLM().__aenter__()
    llm.script(
        "Codebase analyzer",
        output(
            summary="A small WSGI shop with one route module and its tests.",
            narrative="Routes live in app/main.py; tests in tests/.",
            task_notes="Nothing unusual.",
        ),
    )
    workspaces = tmp_path / "workspaces"
    make_project(workspaces / "shop")
    env = clean_env(
        DEVTEAM_DATABASE_URL=postgres_url,
        DEVTEAM_REDIS_URL=redis_url,
        DEVTEAM_REDIS_PREFIX=redis_prefix,
        DEVTEAM_JWT_SECRET=JWT_SECRET,
        DEVTEAM_MIGRATE_ON_START="false",
        DEVTEAM_WORKSPACES_ROOT=str(workspaces),
        DEVTEAM_LOG_FORMAT="json",
        DEVTEAM_LLM_MODEL="openai-chat:fake",
        DEVTEAM_LLM_BASE_URL=llm.base_url,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    api = Process("api", ["serve", "--no-executors"], env, tmp_path / "api.log")
    worker = Process("worker", ["worker"], env, tmp_path / "worker.log")
    try:
        api.wait_ready()
        worker.wait_ready()
        await create_user(postgres_url, "tracer")
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            login = await http.post(
                "/api/v1/auth/token", data={"username": "tracer", "password": PASSWORD}
            )
            http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            submitted = await http.post(
                "/api/v1/tasks",
                headers={"traceparent": TRACEPARENT},
                json={
                    "task": "Describe the structure of the shop project",
                    "complexity": 1,
                    "agent_type": "codebase_analyzer",
                    "project_id": "shop",
                },
            )
            assert submitted.status_code == 202, submitted.text
            task_id = submitted.json()["id"]
            deadline = time.monotonic() + 90
            while (task := (await http.get(f"/api/v1/tasks/{task_id}")).json())["status"] not in (
                "completed",
                "failed",
                "cancelled",
            ):
                assert time.monotonic() < deadline, task
                await asyncio.sleep(0.2)  # the processes offer no event to await here
            api_events = (await http.get(f"/api/v1/tasks/{task_id}/events")).json()["items"]
        assert task["status"] == "completed", task["error"]

        def complete(spans: list[Span]) -> bool:
            names = {s.name for s in spans}
            return (
                any(n.startswith("agent codebase_analyzer") for n in names)
                and any(n.startswith("mcp ") for n in names)
                and any(n.startswith("chat ") for n in names)
                and "team_leader.submit" in names
            )

        deadline = time.monotonic() + 30
        while not complete(spans := receiver.trace(TRACE_ID)):
            assert time.monotonic() < deadline, sorted({(s.service, s.name) for s in spans})
            await asyncio.sleep(0.1)  # spans arrive in batches, on the exporter's schedule
        rows = await events_of(postgres_url, task_id)
    finally:
        for process in (worker, api):
            process.stop()
        await llm.__aexit__(None, None, None)

    services = {s.service for s in spans}
    assert services == {"devteam-api", "devteam-worker"}
    by_id = {s.span_id: s for s in spans}
    http_spans = [s for s in spans if s.service == "devteam-api" and s.name.startswith("POST")]
    assert http_spans, sorted(s.name for s in spans)
    # The incoming traceparent's span is the parent of the request's server span.
    assert any(s.parent_id == TRACEPARENT.split("-")[2] for s in http_spans)
    agent = next(s for s in spans if s.name.startswith("agent codebase_analyzer"))
    assert agent.service == "devteam-worker"
    mcp = [s for s in spans if s.name.startswith("mcp ")]
    assert all(s.service == "devteam-worker" for s in mcp)
    # Each MCP call span sits below the agent's span.
    for call in mcp:
        parent = by_id.get(call.parent_id)
        while parent is not None and parent is not agent:
            parent = by_id.get(parent.parent_id)
        assert parent is agent, call
    # So does the LLM request (pydantic-ai's span of the model request).
    for request in [s for s in spans if s.name.startswith("chat ")]:
        parent = by_id.get(request.parent_id)
        while parent is not None and parent is not agent:
            parent = by_id.get(parent.parent_id)
        assert parent is agent, request
    assert task["result"]["output"]["analysis"] == "structural+llm"
    # Every event of the task carries the trace id, in the table and over the API.
    assert rows and {row["trace_id"] for row in rows} == {TRACE_ID}
    assert {e["trace_id"] for e in api_events} == {TRACE_ID}
    # And so do the log lines written for it.
    traced = [
        line
        for line in worker.log.read_text().splitlines()
        if line.startswith("{") and json.loads(line).get("task_id") == task_id
    ]
    assert traced and all(json.loads(line).get("trace_id") == TRACE_ID for line in traced)
