"""The CLI's pieces that need no server: progress from events, URLs, credentials, exit codes."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from devteam.cli_client import Credentials, ExitCode, Progress, exit_code_for, websocket_url

ROOT = str(uuid.uuid4())
SUB = str(uuid.uuid4())


def event(seq: int, kind: str, subtask: str | None = None, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "type": kind, "subtask_id": subtask, "data": data, "task_id": ROOT}


def test_progress_follows_subtasks_tools_and_usage() -> None:
    progress = Progress(ROOT)
    usage = {"input_tokens": 100, "output_tokens": 20, "cost_usd": 0.01}
    lines = [
        progress.apply(event(1, "task.created", status="pending")),
        progress.apply(
            event(2, "task.planned", subtasks=[{"id": SUB, "key": "api", "agent_type": "backend"}])
        ),
        progress.apply(event(3, "task.started", SUB, status="in_progress", key="api")),
        progress.apply(
            event(4, "tool.call", SUB, key="api", server="workspace", tool="tree", outcome="ok")
        ),
        progress.apply(event(5, "task.progress", SUB, key="api", message="writing the handler")),
        progress.apply(event(6, "task.completed", SUB, status="completed", key="api", usage=usage)),
    ]
    finish = event(7, "task.completed", status="completed")
    assert lines[1].split()[:4] == ["#2", "task.planned", "task", "1"]
    assert lines[3].endswith("workspace.tree ok")
    assert lines[4].endswith("writing the handler")
    (row,) = progress.rows.values()
    assert (row.key, row.agent, row.status, row.tool_calls, row.tokens) == (
        "api", "backend", "completed", 1, 120,
    )  # fmt: skip
    assert not progress.finished(event(6, "task.completed", SUB))
    assert progress.finished(finish)
    progress.apply(finish)
    console = Console(width=200, record=True)
    console.print(progress.view())
    text = console.export_text()
    assert f"task {ROOT}: completed · 1 tool calls · 120 tokens · $0.0100" in text
    assert "api" in text and "backend" in text


def test_watching_a_subtask_ends_with_that_subtask() -> None:
    progress = Progress(SUB)
    assert progress.finished(event(9, "task.failed", SUB, status="failed"))
    assert not progress.finished(event(9, "task.failed", str(uuid.uuid4()), status="failed"))


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("completed", ExitCode.COMPLETED),
        ("failed", ExitCode.FAILED),
        ("cancelled", ExitCode.CANCELLED),
    ],
)
def test_exit_codes_follow_the_outcome(status: str, code: ExitCode) -> None:
    assert exit_code_for(status) == code


def test_websocket_url_of_the_service() -> None:
    assert websocket_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/api/v1/ws"
    assert websocket_url("https://devteam.example.com/base/") == (
        "wss://devteam.example.com/base/api/v1/ws"
    )


def test_credentials_are_private_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "config" / "devteam" / "credentials.json"
    saved = Credentials("http://x", "ada", "access", "refresh", 123.0)
    saved.save(path)
    assert Credentials.load(path) == saved
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.write_text("{not json")
    assert Credentials.load(path) is None
