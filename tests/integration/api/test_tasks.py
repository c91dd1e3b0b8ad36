"""The task endpoints: submit (validation, idempotency), list, read, events, cancel, approve."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import FastAPI

from devteam.domain.enums import Role
from tests.auth import add_user, assert_error, bearer, login
from tests.factories import create_root_task
from tests.fakes.agents import ScriptBook, Step
from tests.live import finished, reaches

# API.md's task object, and what this service adds to it.
TASK_KEYS = {
    "id", "parent_id", "root_id", "status", "agent_type", "task_type", "task",
    "complexity", "priority", "project_id", "metadata", "phase", "depends_on",
    "attempt", "created_by", "created_at", "updated_at", "started_at", "finished_at",
    "result", "error", "usage", "subtasks",
}  # fmt: skip
EXTRA_KEYS = {"key", "require_approval", "budget"}
USAGE_KEYS = {"requests", "input_tokens", "output_tokens", "tool_calls", "cost_usd"}
EVENT_KEYS = {"id", "task_id", "subtask_id", "seq", "type", "data", "ts", "trace_id"}

PLAN = [
    {"key": "look", "agent_type": "research", "task": "Research the options", "complexity": 1},
    {
        "key": "build",
        "agent_type": "backend",
        "task": "Build the endpoint",
        "complexity": 2,
        "depends_on": ["look"],
    },
]


def body(**fields: Any) -> dict[str, Any]:
    fields.setdefault("task", "Add a health endpoint to the service")
    fields.setdefault("complexity", 3)
    return fields


async def user_headers(
    app: FastAPI, client: httpx.AsyncClient, role: Role = Role.DEVELOPER
) -> dict[str, str]:
    user = await add_user(app, role)
    return bearer((await login(client, user.username))["access_token"])


async def audit_actions(app: FastAPI, action: str) -> list[tuple[str, str | None]]:
    async with app.state.services.store.read() as tx:
        entries = await tx.audit.list(action=action, limit=100)
    return [(e.outcome.value, e.resource_id) for e in entries]


async def test_submit_answers_202_with_the_task_and_audits_it(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        headers = await user_headers(app, client)
        fields = body(project_id=None, metadata={"ticket": "OPS-42"}, priority=7)
        response = await client.post("/api/v1/tasks", json=fields, headers=headers)
        assert response.status_code == 202, response.text
        task = response.json()
        read = (await client.get(f"/api/v1/tasks/{task['id']}", headers=headers)).json()
        events = (await client.get(f"/api/v1/tasks/{task['id']}/events", headers=headers)).json()
        audited = await audit_actions(app, "task.submit")
    assert set(task) == TASK_KEYS | EXTRA_KEYS
    assert set(task["usage"]) == USAGE_KEYS
    assert task["status"] == "pending"
    assert task["root_id"] == task["id"] and task["parent_id"] is None
    assert (task["priority"], task["metadata"], task["subtasks"]) == (7, {"ticket": "OPS-42"}, [])
    assert read["id"] == task["id"] and read["task"] == fields["task"]
    assert [(e["seq"], e["type"]) for e in events["items"]] == [(1, "task.created")]
    assert set(events["items"][0]) == EVENT_KEYS
    assert events["next_after"] is None
    assert audited == [("success", task["id"])]


async def test_a_submission_answers_the_same_with_or_without_the_generic_solver(
    make_auth_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plain JSON submission finds its arguments without FastAPI's solver (api/direct.py);
    # any other (here: a JSON media type of its own) goes through it. Both answer alike.
    solved: list[str] = []
    generic = fastapi.routing.solve_dependencies

    async def counting(*args: Any, **kwargs: Any) -> Any:
        solved.append(kwargs["request"].headers.get("content-type", ""))
        return await generic(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counting)
    content = json.dumps(body(metadata={"ticket": "OPS-42"})).encode()
    answers = {}
    async with make_auth_client() as (app, client):
        headers = await user_headers(app, client)
        solved.clear()
        for kind in ("application/json; charset=utf-8", "application/vnd.devteam+json"):
            sent = {**headers, "Content-Type": kind}
            made = await client.post("/api/v1/tasks", content=content, headers=sent)
            keyed = {**sent, "Idempotency-Key": kind}
            first = await client.post("/api/v1/tasks", content=content, headers=keyed)
            replay = await client.post("/api/v1/tasks", content=content, headers=keyed)
            anonymous = await client.post(
                "/api/v1/tasks", content=content, headers={"Content-Type": kind}
            )
            bad = await client.post("/api/v1/tasks", content=b'{"task": 1}', headers=sent)
            answers[kind] = [made, first, replay, anonymous, bad]
    # Directly: all but the invalid body (FastAPI answers its errors).
    assert solved == ["application/json; charset=utf-8"] + ["application/vnd.devteam+json"] * 5
    for direct, solver in zip(*answers.values(), strict=True):
        assert direct.status_code == solver.status_code, (direct.text, solver.text)
        assert direct.headers["content-type"] == solver.headers["content-type"]
        limits = {k for k in direct.headers if k.startswith("ratelimit-")}
        assert limits == {k for k in solver.headers if k.startswith("ratelimit-")}
        one, other = direct.json(), solver.json()
        if direct.status_code >= 400:
            assert one["error"]["code"] == other["error"]["code"]
            assert one["error"]["details"] == other["error"]["details"]
        else:
            assert set(one) == set(other) == TASK_KEYS | EXTRA_KEYS
            assert {k: one[k] for k in ("task", "metadata", "status")} == {
                k: other[k] for k in ("task", "metadata", "status")
            }
    direct_answers = answers["application/json; charset=utf-8"]
    assert [a.status_code for a in direct_answers] == [202, 202, 200, 401, 422]
    assert direct_answers[1].json()["id"] == direct_answers[2].json()["id"]


# One bad value per rule of API.md's TaskRequest table: (id, body, the field reported).
_BIG = "x" * (16 * 1024)
BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("task missing", {"complexity": 3}, "task"),
    ("task 9 chars", body(task="too short"), "task"),
    ("task 9 chars after trimming", body(task="   too short   "), "task"),
    ("task 10001 chars", body(task="x" * 10_001), "task"),
    ("task not a string", body(task=12345678901), "task"),
    ("complexity missing", {"task": "Add a health endpoint"}, "complexity"),
    ("complexity 0", body(complexity=0), "complexity"),
    ("complexity 11", body(complexity=11), "complexity"),
    ("complexity a string", body(complexity="3"), "complexity"),
    ("task_type empty", body(task_type=""), "task_type"),
    ("task_type 101 chars", body(task_type="t" * 101), "task_type"),
    ("agent_type unknown", body(agent_type="wizard"), "agent_type"),
    ("priority 0", body(priority=0), "priority"),
    ("priority 11", body(priority=11), "priority"),
    ("project_id with a space", body(project_id="my project"), "project_id"),
    ("project_id 65 chars", body(project_id="p" * 65), "project_id"),
    ("project_id not a repository", body(project_id="no-such-project"), "project_id"),
    ("metadata over 16 KiB", body(metadata={"notes": _BIG}), "metadata"),
    ("metadata key __", body(metadata={"__proto": 1}), "metadata"),
    ("metadata nested key __", body(metadata={"a": [{"__x": 1}]}), "metadata"),
    ("metadata not an object", body(metadata=[1, 2]), "metadata"),
    ("subtasks empty", body(subtasks=[]), "subtasks"),
    (
        "subtasks over 50",
        body(subtasks=[{**PLAN[0], "key": f"k{i}"} for i in range(51)]),
        "subtasks",
    ),
    ("subtask key pattern", body(subtasks=[{**PLAN[0], "key": "a b"}]), "subtasks.0.key"),
    (
        "subtask agent_type",
        body(subtasks=[{**PLAN[0], "agent_type": "x"}]),
        "subtasks.0.agent_type",
    ),
    ("subtask task short", body(subtasks=[{**PLAN[0], "task": "short"}]), "subtasks.0.task"),
    ("subtask complexity", body(subtasks=[{**PLAN[0], "complexity": 11}]), "subtasks.0.complexity"),
    ("subtask priority", body(subtasks=[{**PLAN[0], "priority": 0}]), "subtasks.0.priority"),
    ("subtask phase", body(subtasks=[{**PLAN[0], "phase": "lunch"}]), "subtasks.0.phase"),
    ("subtask unknown field", body(subtasks=[{**PLAN[0], "owner": "me"}]), "subtasks.0.owner"),
    ("subtask keys repeated", body(subtasks=[PLAN[0], PLAN[0]]), ""),
    ("depends_on unknown key", body(subtasks=[{**PLAN[0], "depends_on": ["zz"]}]), ""),
    ("depends_on itself", body(subtasks=[{**PLAN[0], "depends_on": ["look"]}]), ""),
    (
        "depends_on cycle",
        body(subtasks=[{**PLAN[0], "depends_on": ["build"]}, PLAN[1]]),
        "",
    ),
    (
        "plan over the complexity budget",
        body(subtasks=[{**PLAN[0], "key": f"k{i}", "complexity": 10} for i in range(3)]),
        "subtasks",
    ),
    ("budget max_tokens 0", body(budget={"max_tokens": 0}), "budget.max_tokens"),
    ("budget max_cost_usd 0", body(budget={"max_cost_usd": 0}), "budget.max_cost_usd"),
    ("budget timeout_s negative", body(budget={"timeout_s": -1}), "budget.timeout_s"),
    ("budget unknown field", body(budget={"max_minutes": 5}), "budget.max_minutes"),
    ("require_approval a string", body(require_approval="yes"), "require_approval"),
    ("unknown field", body(colour="blue"), "colour"),
]


async def test_each_request_rule_refuses_a_bad_value_with_422(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        headers = await user_headers(app, client)
        problems = []
        for name, bad, field in BAD_BODIES:
            response = await client.post("/api/v1/tasks", json=bad, headers=headers)
            try:
                assert_error(response, 422, "validation_error")
                fields = [d["field"] for d in response.json()["error"]["details"]]
                assert field in fields, fields
            except AssertionError as exc:
                problems.append(f"{name}: {exc}")
        listed = (await client.get("/api/v1/tasks", headers=headers)).json()
    assert not problems, "\n".join(problems)
    assert listed["items"] == [], "nothing refused was created"


async def test_idempotency_key_replays_or_conflicts(
    database_url: str, make_auth_client: Callable[..., Any]
) -> None:
    async with make_auth_client(database_url=database_url) as (app, client):
        ada = await user_headers(app, client)
        bob = await user_headers(app, client)
        key = {"Idempotency-Key": "deploy-2025-01-31"}
        first = await client.post("/api/v1/tasks", json=body(), headers={**ada, **key})
        again = await client.post("/api/v1/tasks", json=body(), headers={**ada, **key})
        other_body = await client.post(
            "/api/v1/tasks", json=body(complexity=4), headers={**ada, **key}
        )
        other_user = await client.post("/api/v1/tasks", json=body(), headers={**bob, **key})
        too_long = await client.post(
            "/api/v1/tasks", json=body(), headers={**ada, "Idempotency-Key": "k" * 256}
        )
        listed = (await client.get("/api/v1/tasks", headers=ada)).json()["items"]
        audited = await audit_actions(app, "task.submit")
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert_error(other_body, 409, "conflict")
    assert other_user.status_code == 202 and other_user.json()["id"] != first.json()["id"]
    assert_error(too_long, 422, "validation_error")
    assert too_long.json()["error"]["details"][0]["field"] == "Idempotency-Key"
    assert [t["id"] for t in listed] == [first.json()["id"]]
    assert sorted(outcome for outcome, _ in audited) == ["failure", "success", "success"]


async def test_list_is_newest_first_filtered_and_paged(
    database_url: str, make_auth_client: Callable[..., Any], tmp_path: Any
) -> None:
    (tmp_path / "workspaces" / "shop" / ".git").mkdir(parents=True)
    async with make_auth_client(database_url=database_url) as (app, client):
        ada = await user_headers(app, client)
        bob = await user_headers(app, client)
        operator = await user_headers(app, client, Role.OPERATOR)
        ids = []
        for i, extra in enumerate(
            [{}, {"project_id": "shop"}, {"agent_type": "research"}, {"project_id": "shop"}, {}]
        ):
            response = await client.post(
                "/api/v1/tasks", json=body(priority=i + 1, **extra), headers=ada
            )
            ids.append(response.json()["id"])
        bobs = (await client.post("/api/v1/tasks", json=body(), headers=bob)).json()["id"]
        await client.post(f"/api/v1/tasks/{ids[0]}/cancel", headers=ada)

        async def listing(headers: dict[str, str], **params: Any) -> list[str]:
            response = await client.get("/api/v1/tasks", params=params, headers=headers)
            assert response.status_code == 200, response.text
            return [t["id"] for t in response.json()["items"]]

        newest_first = list(reversed(ids))
        assert await listing(ada) == newest_first
        assert await listing(operator) == [bobs, *newest_first]
        assert await listing(ada, project_id="shop") == [ids[3], ids[1]]
        assert await listing(ada, agent_type="research") == [ids[2]]
        assert await listing(ada, status="cancelled") == [ids[0]]
        assert await listing(ada, status="pending", project_id="shop") == [ids[3], ids[1]]
        paged, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/tasks", params=params, headers=ada)).json()
            assert len(page["items"]) <= 2
            paged += [t["id"] for t in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                break
        assert paged == newest_first
        for params in ({"cursor": "garbage"}, {"limit": 0}, {"limit": 101}, {"status": "done"}):
            assert_error(
                await client.get("/api/v1/tasks", params=params, headers=ada),
                422,
                "validation_error",
            )


async def test_read_a_finished_task_its_subtasks_result_and_events(
    make_auth_client: Callable[..., Any],
) -> None:
    script = ScriptBook().on("*", Step(progress=["working"], tool_calls=1))
    async with make_auth_client(executors=True, agents=script.agents()) as (app, client):
        headers = await user_headers(app, client)
        root_id = (
            await client.post("/api/v1/tasks", json=body(subtasks=PLAN), headers=headers)
        ).json()["id"]
        await finished(app.state.services, root_id)
        root = (await client.get(f"/api/v1/tasks/{root_id}", headers=headers)).json()
        look = next(s for s in root["subtasks"] if s["key"] == "look")
        subtask = (await client.get(f"/api/v1/tasks/{look['id']}", headers=headers)).json()
        everything = (await client.get(f"/api/v1/tasks/{root_id}/events", headers=headers)).json()
        page = (
            await client.get(
                f"/api/v1/tasks/{root_id}/events", params={"after": 3, "limit": 2}, headers=headers
            )
        ).json()
        mine = (await client.get(f"/api/v1/tasks/{look['id']}/events", headers=headers)).json()
    assert root["status"] == "completed"
    assert [s["key"] for s in root["subtasks"]] == ["look", "build"]
    assert {s["status"] for s in root["subtasks"]} == {"completed"}
    assert subtask["parent_id"] == root_id and subtask["root_id"] == root_id
    assert subtask["result"]["output"]["key"] == "look"
    assert subtask["result"]["summary"] == "look done"
    seqs = [e["seq"] for e in everything["items"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e["seq"] for e in page["items"]] == [4, 5] and page["next_after"] == 5
    assert {e["subtask_id"] for e in mine["items"]} == {look["id"]}
    assert "tool.call" in [e["type"] for e in mine["items"]]


async def test_cancel_reaches_a_running_agent_and_refuses_what_cannot_be_cancelled(
    make_auth_client: Callable[..., Any],
) -> None:
    script = ScriptBook().on("root", Step(block=True))
    async with make_auth_client(executors=True, agents=script.agents()) as (app, client):
        headers = await user_headers(app, client)
        task_id = (
            await client.post("/api/v1/tasks", json=body(agent_type="backend"), headers=headers)
        ).json()["id"]
        await asyncio.wait_for(script.blocked.wait(), 10)
        cancelled = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
        final = await finished(app.state.services, task_id)
        again = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers)
        planned = (
            await client.post("/api/v1/tasks", json=body(subtasks=PLAN), headers=headers)
        ).json()["id"]
        await finished(app.state.services, planned)
        subtask = (await client.get(f"/api/v1/tasks/{planned}", headers=headers)).json()[
            "subtasks"
        ][0]
        of_subtask = await client.post(f"/api/v1/tasks/{subtask['id']}/cancel", headers=headers)
        audited = await audit_actions(app, "task.cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] in ("cancelling", "cancelled")
    assert final.status == "cancelled"
    assert script.finished["root"] == 1, "the running agent was stopped"
    assert_error(again, 409, "conflict")
    assert_error(of_subtask, 409, "conflict")
    assert sorted(audited) == sorted(
        [("success", task_id), ("failure", task_id), ("failure", subtask["id"])]
    )


async def test_approve_or_reject_a_plan(make_auth_client: Callable[..., Any]) -> None:
    script = ScriptBook()
    async with make_auth_client(executors=True, agents=script.agents()) as (app, client):
        services = app.state.services
        headers = await user_headers(app, client)
        first = (
            await client.post(
                "/api/v1/tasks", json=body(subtasks=PLAN, require_approval=True), headers=headers
            )
        ).json()["id"]
        second = (
            await client.post(
                "/api/v1/tasks", json=body(subtasks=PLAN, require_approval=True), headers=headers
            )
        ).json()["id"]
        await reaches(services, first, {"awaiting_approval"})
        await reaches(services, second, {"awaiting_approval"})
        bad = await client.post(
            f"/api/v1/tasks/{first}/approve", json={"approved": "yes"}, headers=headers
        )
        extra = await client.post(
            f"/api/v1/tasks/{first}/approve", json={"approved": True, "by": "me"}, headers=headers
        )
        approved = await client.post(
            f"/api/v1/tasks/{first}/approve", json={"approved": True}, headers=headers
        )
        rejected = await client.post(
            f"/api/v1/tasks/{second}/approve",
            json={"approved": False, "comment": "too broad"},
            headers=headers,
        )
        done = await finished(services, first)
        late = await client.post(
            f"/api/v1/tasks/{first}/approve", json={"approved": True}, headers=headers
        )
        audited = await audit_actions(app, "task.approve")
    assert_error(bad, 422, "validation_error")
    assert_error(extra, 422, "validation_error")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] not in ("awaiting_approval", "cancelled")
    assert done.status == "completed"
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "cancelled"
    assert "too broad" in rejected.json()["error"]["message"]
    assert_error(late, 409, "conflict")
    assert sorted(audited) == sorted([("success", first), ("success", second), ("failure", first)])


async def test_unknown_and_malformed_ids(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (app, client):
        headers = await user_headers(app, client)
        missing = uuid.uuid4()
        for method, path in [
            ("GET", f"/api/v1/tasks/{missing}"),
            ("GET", f"/api/v1/tasks/{missing}/events"),
            ("POST", f"/api/v1/tasks/{missing}/cancel"),
        ]:
            response = await client.request(method, path, headers=headers)
            assert_error(response, 404, "not_found")
            assert response.json()["error"]["message"] == f"task {missing} not found"
        assert_error(
            await client.get("/api/v1/tasks/not-a-uuid", headers=headers), 422, "validation_error"
        )
        assert_error(
            await client.get(f"/api/v1/tasks/{missing}/events?after=-1", headers=headers),
            422,
            "validation_error",
        )


async def test_a_viewer_reads_but_cannot_act_on_own_tasks(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (app, client):
        viewer = await add_user(app, Role.VIEWER)
        headers = bearer((await login(client, viewer.username))["access_token"])
        task = await create_root_task(app.state.services.store, viewer)
        read = await client.get(f"/api/v1/tasks/{task.id}", headers=headers)
        cancel = await client.post(f"/api/v1/tasks/{task.id}/cancel", headers=headers)
        audited = await audit_actions(app, "task.cancel")
    assert read.status_code == 200
    assert_error(cancel, 403, "forbidden")
    assert audited == [("denied", str(task.id))]
