"""Subtask summaries say what each subtask does: `key` and `task`, over REST, WebSocket, CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from devteam.cli_client import print_task
from devteam.client import Task as ClientTask
from tests.fakes.agents import ScriptBook, Step
from tests.live import events_until_end, receive, send

PLAN = [
    {
        "key": "survey",
        "agent_type": "research",
        "task": "Survey the rate limiting libraries in use",
        "complexity": 1,
    },
    {
        "key": "wire",
        "agent_type": "backend",
        "task": "Wire the chosen limiter into the login route",
        "complexity": 2,
        "depends_on": ["survey"],
    },
]
TEXT = {step["key"]: step["task"] for step in PLAN}

# API.md: a subtask summary has at least these.
SUMMARY_KEYS = {
    "id", "key", "task", "status", "agent_type", "phase", "complexity", "attempt",
    "depends_on", "error",
}  # fmt: skip


async def test_subtask_summaries_carry_key_and_task_everywhere(
    make_live_server: Callable[..., Any],
) -> None:
    script = ScriptBook().on("*", Step(progress=["working"]))
    async with make_live_server(agents=script.agents()) as server:
        _, token = await server.login_new_user()
        async with server.http(token) as http:
            submitted = await http.post(
                "/api/v1/tasks",
                json={"task": "Limit logins per client", "complexity": 3, "subtasks": PLAN},
            )
            assert submitted.status_code == 202, submitted.text
            task_id = submitted.json()["id"]
            async with server.websocket(token) as socket:
                await send(socket, type="subscribe", task_id=task_id, after=0)
                assert (await receive(socket))["type"] == "subscribed"
                events = await events_until_end(socket, task_id)
            task = (await http.get(f"/api/v1/tasks/{task_id}")).json()

    summaries = task["subtasks"]
    assert [s["key"] for s in summaries] == ["survey", "wire"]
    for summary in summaries:
        assert set(summary) >= SUMMARY_KEYS
        assert summary["task"] == TEXT[summary["key"]]

    planned = next(e for e in events if e["type"] == "task.planned")
    assert {s["key"]: s["task"] for s in planned["data"]["subtasks"]} == TEXT
    status_events = [
        e
        for e in events
        if e["subtask_id"] is not None and e["type"] in {"task.started", "task.completed"}
    ]
    assert {e["data"]["key"] for e in status_events} == {"survey", "wire"}
    for event in status_events:
        assert event["data"]["task"] == TEXT[event["data"]["key"]]

    console = Console(width=200, record=True)
    print_task(console, ClientTask.model_validate(task))
    table = console.export_text()
    for key, text in TEXT.items():
        line = next(line for line in table.splitlines() if line.strip().startswith(key))
        assert text in line
