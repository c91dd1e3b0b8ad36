"""Prometheus metrics: the whole catalogue, in one place.

Every label value is bounded: route templates (never raw paths), statuses and
agent types from enums, server and model names from configuration. Nothing a
user types becomes a label.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any, TypeVar, cast

from prometheus_client import Counter, Gauge, Histogram, Info

from devteam.domain.enums import AgentType, TaskStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LONG_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

BUILD_INFO = Info("devteam_build", "Version of the running service")

# HTTP (RED by route template)
HTTP_REQUESTS = Counter(
    "devteam_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "devteam_http_request_duration_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("devteam_http_requests_in_flight", "HTTP requests being handled")

# Tasks and the TeamLeader
TASKS_SUBMITTED = Counter("devteam_tasks_submitted_total", "Root tasks submitted", ["agent_type"])
TASK_TRANSITIONS = Counter(
    "devteam_task_transitions_total", "Task status changes", ["from_status", "to_status"]
)
TASKS_IN_PROGRESS = Gauge(
    "devteam_tasks_in_progress", "Agent attempts running in this process", ["agent_type"]
)
TASK_DURATION = Histogram(
    "devteam_task_duration_seconds",
    "Time from a task's start to its end",
    ["agent_type", "status"],
    buckets=LONG_BUCKETS,
)
TASK_RETRIES = Counter("devteam_task_retries_total", "Attempts retried", ["agent_type"])
RULE_DECISIONS = Counter(
    "devteam_rule_decisions_total",
    "Rule decisions that changed a transition",
    ["rule", "decision"],
)
BUDGETS_EXCEEDED = Counter("devteam_budget_exceeded_total", "Tasks stopped by a budget", ["budget"])
QUEUE_DEPTH = Gauge("devteam_queue_depth", "Messages in the work queue", ["queue", "state"])
QUEUE_WAIT = Histogram(
    "devteam_queue_wait_seconds",
    "Time from delegation to an agent starting",
    ["agent_type"],
    buckets=LONG_BUCKETS,
)
EXECUTOR_SLOTS = Gauge("devteam_executor_slots", "Executor capacity of this process", ["state"])
WORKER_HEARTBEAT = Gauge(
    "devteam_worker_heartbeat_timestamp_seconds",
    "Unix time of this process's last executor heartbeat",
)

# Agents and LLM
AGENT_EXECUTIONS = Counter(
    "devteam_agent_executions_total", "Agent attempts finished", ["agent_type", "outcome"]
)
AGENT_DURATION = Histogram(
    "devteam_agent_execution_duration_seconds",
    "Duration of one agent attempt",
    ["agent_type"],
    buckets=LONG_BUCKETS,
)
LLM_REQUESTS = Counter(
    "devteam_llm_requests_total", "LLM requests", ["model", "agent_type", "outcome"]
)
LLM_TOKENS = Counter("devteam_llm_tokens_total", "LLM tokens", ["model", "agent_type", "direction"])
LLM_COST = Counter("devteam_llm_cost_usd_total", "LLM cost in USD", ["model", "agent_type"])

# MCP
MCP_CALLS = Counter("devteam_mcp_calls_total", "MCP tool calls", ["server", "tool", "outcome"])
MCP_DURATION = Histogram(
    "devteam_mcp_call_duration_seconds",
    "MCP tool call duration",
    ["server"],
    buckets=LATENCY_BUCKETS,
)
MCP_RETRIES = Counter("devteam_mcp_retries_total", "MCP call retries", ["server"])
MCP_CACHE = Counter("devteam_mcp_cache_total", "MCP result cache lookups", ["server", "result"])
MCP_CIRCUIT_STATE = Gauge(
    "devteam_mcp_circuit_state",
    "Circuit breaker state per server: 0 closed, 1 half-open, 2 open",
    ["server"],
)
MCP_CIRCUIT_TRANSITIONS = Counter(
    "devteam_mcp_circuit_transitions_total", "Circuit breaker state changes", ["server", "state"]
)

# WebSocket and rate limits
WS_CONNECTIONS = Gauge("devteam_ws_connections", "Open WebSocket connections")
WS_MESSAGES = Counter("devteam_ws_messages_total", "WebSocket messages", ["direction", "type"])
WS_DROPS = Counter(
    "devteam_ws_drops_total", "WebSocket subscriptions or connections dropped", ["reason"]
)
RATE_LIMIT_REJECTIONS = Counter(
    "devteam_rate_limit_rejections_total", "Requests refused by a rate limit", ["scope"]
)
RATE_LIMIT_UNAVAILABLE = Counter(
    "devteam_rate_limit_unavailable_total",
    "Rate-limit checks whose storage could not answer in time, by scope and what was done "
    "(allowed: the limit failed open; refused: 503)",
    ["scope", "action"],
)

# Retention
RETENTION_PURGED = Counter(
    "devteam_retention_purged_total", "Rows deleted by the retention purge", ["kind"]
)
RETENTION_RUNS = Counter("devteam_retention_runs_total", "Retention purge runs", ["outcome"])


M = TypeVar("M", Counter, Gauge, Histogram)
_CHILDREN: dict[tuple[int, tuple[str, ...]], Any] = {}


def series(metric: M, *labels: str) -> M:
    """`metric.labels(*labels)`, looked up once: the orchestration's hot path records
    several series per transition, and every label set here is bounded."""
    key = (id(metric), labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return cast(M, child)


def export_at_zero(counter: Counter, label_sets: Iterable[Sequence[str]]) -> None:
    """Create these series now, at zero, so dashboards and alerts (`rate()`, `increase()`)
    see them before their first event."""
    for labels in label_sets:
        counter.labels(*labels)


# Series whose label values are known in advance exist from start-up. Those named by
# configuration (rate-limit scopes, MCP servers) are created where that is read.
_AGENTS = [a.value for a in AgentType]
_OUTCOMES = [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.DELEGATED]
export_at_zero(TASKS_SUBMITTED, [(a,) for a in [*_AGENTS, "auto"]])
export_at_zero(TASK_RETRIES, [(a,) for a in _AGENTS])
export_at_zero(AGENT_EXECUTIONS, [(a, o.value) for a in _AGENTS for o in _OUTCOMES])
export_at_zero(BUDGETS_EXCEEDED, [("tokens",), ("cost",)])
export_at_zero(WS_DROPS, [(r,) for r in ("lagged", "overflow", "too_big", "unauthorized")])
export_at_zero(
    WS_MESSAGES,
    [("in", t) for t in ("subscribe", "unsubscribe", "ping", "invalid")]
    + [
        ("out", t)
        for t in ("subscribed", "unsubscribed", "event", "pong", "error", "lagged", "heartbeat")
    ],
)
export_at_zero(RETENTION_PURGED, [(k,) for k in ("refresh_tokens", "audit", "events", "tasks")])
export_at_zero(RETENTION_RUNS, [("ok",), ("error",)])


def route_label(scope: MutableMapping[str, Any]) -> str:
    """The matched route's template (never the raw path, which would be unbounded).

    `path_format` names a parameter without its convertor (`/users/{user_id}`).
    """
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


_http_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
"""The request counter and duration histogram of each (method, route, status), looked up
once (`labels()` takes a lock and checks its arguments on every call). Bounded: routes
are templates, and methods and statuses few."""


def observe_http(scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
    """Record one HTTP request (the edge middleware calls this after each response)."""
    method = str(scope.get("method", "GET"))
    route = route_label(scope)
    series = _http_series.get((method, route, status))
    if series is None:
        series = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_DURATION.labels(method, route),
        )
        if len(_http_series) < 10_000:
            _http_series[(method, route, status)] = series
    requests, duration = series
    requests.inc()
    duration.observe(seconds)
