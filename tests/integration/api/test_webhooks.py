"""Webhooks end to end: a real receiver on loopback, a real uvicorn, SQLite and Postgres.

Signed per Standard Webhooks (the receiver verifies with `standardwebhooks`),
retried after a 500, still delivered after the service restarted, refused at
submission (and again at delivery) for an address that is not allowed, and
listed at `GET /api/v1/tasks/{id}/webhooks`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from devteam.domain.webhooks import DeliveryStatus
from tests import servers
from tests.fakes.agents import ScriptBook, Step
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.live import LiveServer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = {
    "webhook_secret": SECRET,
    "webhook_allowed_hosts": ["127.0.0.1"],
    "webhook_retry_initial_s": 0.2,
    "webhook_poll_s": 0.05,
}


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("postgres_url")
    servers.truncate_postgres(url)
    return url


async def submit(server: LiveServer, token: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("task", "Build the feature the test asks for")
    fields.setdefault("complexity", 3)
    fields.setdefault("agent_type", "backend")
    async with server.http(token) as http:
        response = await http.post("/api/v1/tasks", json=fields)
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


async def deliveries_when(
    server: LiveServer,
    token: str,
    task_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """`GET …/webhooks` until `done` says so (the outcome is recorded after the receiver
    answered; there is no event to wait for)."""
    async with server.http(token) as http, asyncio.timeout(timeout):
        while True:
            response = await http.get(f"/api/v1/tasks/{task_id}/webhooks")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if done(body):
                return body
            await asyncio.sleep(0.05)


def delivered(body: dict[str, Any]) -> bool:
    return bool(body["items"]) and body["items"][0]["status"] == DeliveryStatus.DELIVERED


async def test_a_signed_delivery_is_retried_after_a_500(
    database: str, make_live_server: Callable[..., Any]
) -> None:
    async with (
        WebhookReceiver(SECRET, answers=[500]) as receiver,
        make_live_server(agents=ScriptBook().agents(), database_url=database, **FAST) as server,
    ):
        _, token = await server.login_new_user()
        task = await submit(server, token, webhook={"url": receiver.url})
        first, second = await receiver.deliveries(2)
        listing = await deliveries_when(server, token, task["id"], delivered)
        async with server.http(token) as http:
            shown = (await http.get(f"/api/v1/tasks/{task['id']}")).json()
    assert first.verified and second.verified
    assert (first.answered, second.answered) == (500, 204)
    # The same message both times: one id, the same bytes, the task as the API shows it.
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert first.headers["content-type"] == "application/json"
    assert second.payload == shown
    assert shown["status"] == "completed"
    every_ending = ["completed", "failed", "cancelled"]
    assert listing["webhook"] == {"url": receiver.url, "events": every_ending}
    (item,) = listing["items"]
    assert item["id"] == first.headers["webhook-id"]
    assert item["event"] == "completed"
    assert item["attempts"] == 2
    assert item["next_attempt_at"] is None
    assert item["delivered_at"] is not None
    assert [a["status_code"] for a in item["history"]] == [500, 204]
    assert item["history"][0]["error"] == "the receiver answered 500"
    assert item["last_status_code"] == 204


async def test_a_receiver_that_does_not_answer_in_time_gets_it_again(
    make_live_server: Callable[..., Any],
) -> None:
    async with (
        WebhookReceiver(SECRET, delays=[3.0]) as receiver,
        make_live_server(agents=ScriptBook().agents(), webhook_timeout_s=0.5, **FAST) as server,
    ):
        _, token = await server.login_new_user()
        task = await submit(server, token, webhook={"url": receiver.url})
        listing = await deliveries_when(server, token, task["id"], delivered)
    first, second = listing["items"][0]["history"]
    assert first["status_code"] is None
    assert first["error"] == "no answer within 0.5 s"
    assert second["status_code"] == 204


async def test_redirects_are_not_followed(make_live_server: Callable[..., Any]) -> None:
    async with (
        WebhookReceiver(SECRET, answers=[307]) as receiver,
        make_live_server(agents=ScriptBook().agents(), **FAST) as server,
    ):
        _, token = await server.login_new_user()
        task = await submit(server, token, webhook={"url": receiver.url})
        await receiver.deliveries(2)
        listing = await deliveries_when(server, token, task["id"], delivered)
    assert receiver.redirected == []
    history = listing["items"][0]["history"]
    assert [a["status_code"] for a in history] == [307, 204]
    assert history[0]["error"] == "the receiver answered 307"


async def test_a_pending_delivery_survives_a_restart(
    database: str, make_live_server: Callable[..., Any]
) -> None:
    settings = {**FAST, "database_url": database}
    async with WebhookReceiver(SECRET, answers=[500]) as receiver:
        # The first service retries only after it has stopped.
        async with make_live_server(
            agents=ScriptBook().agents(), **{**settings, "webhook_retry_initial_s": 60}
        ) as server:
            _, token = await server.login_new_user()
            task = await submit(server, token, webhook={"url": receiver.url})
            await receiver.deliveries(1)
            pending = await deliveries_when(
                server, token, task["id"], lambda body: body["items"][0]["attempts"] == 1
            )
        assert pending["items"][0]["status"] == "pending"
        # A new service on the same database: the delivery is due in a minute.
        async with make_live_server(agents=ScriptBook().agents(), **settings) as server:
            async with server.services.store.transaction() as tx:
                await tx.conn.exec_driver_sql(
                    "UPDATE webhook_deliveries SET next_attempt_at = created_at"
                )
            first, second = await receiver.deliveries(2)
            after = await deliveries_when(server, token, task["id"], delivered)
    assert second.verified
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.payload["id"] == task["id"]
    assert after["items"][0]["attempts"] == 2


async def test_the_address_is_checked_again_at_delivery(
    make_live_server: Callable[..., Any], sqlite_url: str
) -> None:
    """Allowed at submission; the next service no longer allows it: nothing is sent."""
    async with WebhookReceiver(SECRET, answers=[500]) as receiver:
        async with make_live_server(
            agents=ScriptBook().agents(),
            database_url=sqlite_url,
            **{**FAST, "webhook_retry_initial_s": 60},
        ) as server:
            _, token = await server.login_new_user()
            task = await submit(server, token, webhook={"url": receiver.url})
            await receiver.deliveries(1)
        strict = {**FAST, "webhook_allowed_hosts": []}
        async with make_live_server(database_url=sqlite_url, **strict) as server:
            async with server.services.store.transaction() as tx:
                await tx.conn.exec_driver_sql(
                    "UPDATE webhook_deliveries SET next_attempt_at = created_at"
                )
            listing = await deliveries_when(
                server, token, task["id"], lambda body: body["items"][0]["attempts"] == 2
            )
    assert len(receiver.received) == 1
    last = listing["items"][0]["history"][-1]
    assert last["status_code"] is None
    assert last["error"].startswith("refused: 127.0.0.1 resolves to 127.0.0.1")


async def test_only_the_events_asked_for_call_the_webhook(
    make_live_server: Callable[..., Any],
) -> None:
    script = ScriptBook().on("root", Step(gate=True))
    async with (
        WebhookReceiver(SECRET) as receiver,
        make_live_server(agents=script.agents(), **FAST) as server,
    ):
        _, token = await server.login_new_user()
        on_failure = {"url": receiver.url, "events": ["failed"]}
        on_cancel = {"url": receiver.url, "events": ["cancelled"]}
        completes = await submit(server, token, webhook=on_failure)
        cancelled = await submit(server, token, webhook=on_cancel)
        async with server.http(token) as http:
            response = await http.post(f"/api/v1/tasks/{cancelled['id']}/cancel")
            assert response.status_code == 202, response.text
            (call,) = await receiver.deliveries(1)
            script.gate.set()
            await server.finished(completes["id"])
            quiet = (await http.get(f"/api/v1/tasks/{completes['id']}/webhooks")).json()
    assert call.verified
    assert call.payload["id"] == cancelled["id"]
    assert call.payload["status"] == "cancelled"
    assert quiet == {"webhook": on_failure, "items": []}
    assert len(receiver.received) == 1


REFUSED = [
    ({"url": "http://127.0.0.1:9/hook"}, "webhook.url", "127.0.0.1 resolves to 127.0.0.1"),
    ({"url": "http://localhost:9/hook"}, "webhook.url", "DEVTEAM_WEBHOOK_ALLOWED_HOSTS"),
    ({"url": "http://169.254.169.254/latest"}, "webhook.url", "link-local"),
    ({"url": "http://10.0.0.8/hook"}, "webhook.url", "private"),
    ({"url": "ftp://example.com/hook"}, "webhook.url", "http:// or https://"),
    ({"url": "https://user:pw@example.com/hook"}, "webhook.url", "user name or password"),
    ({"url": "https://example.com/" + "a" * 2100}, "webhook.url", "at most 2048"),
    ({"url": "https://example.com/h", "events": ["started"]}, "webhook.events.0", "completed"),
    ({"url": "https://example.com/h", "events": ["failed", "failed"]}, "webhook.events", "repeat"),
    ({"url": "https://example.com/h", "events": []}, "webhook.events", "at least 1"),
    ({"url": "https://example.com/h", "secret": "x"}, "webhook.secret", "Extra inputs"),
]


@pytest.mark.parametrize(
    ("webhook", "field", "says"), REFUSED, ids=[f"{i}-{r[1]}" for i, r in enumerate(REFUSED)]
)
async def test_refused_webhooks(
    make_live_server: Callable[..., Any], webhook: dict[str, Any], field: str, says: str
) -> None:
    async with make_live_server(webhook_secret=SECRET) as server:
        _, token = await server.login_new_user()
        async with server.http(token) as http:
            response = await http.post(
                "/api/v1/tasks",
                json={
                    "task": "Build the feature the test asks for",
                    "complexity": 3,
                    "webhook": webhook,
                },
            )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert says in error["message"] + str(error["details"])
    assert any(d["field"] == field for d in error["details"]), error["details"]


async def test_without_a_secret_webhooks_are_refused(make_live_server: Callable[..., Any]) -> None:
    async with make_live_server() as server:
        _, token = await server.login_new_user()
        async with server.http(token) as http:
            response = await http.post(
                "/api/v1/tasks",
                json={
                    "task": "Build the feature the test asks for",
                    "complexity": 3,
                    "webhook": {"url": "https://example.com/hook"},
                },
            )
    assert response.status_code == 422
    assert "DEVTEAM_WEBHOOK_SECRET" in response.json()["error"]["message"]


async def test_deliveries_follow_the_rules_of_the_task(
    make_live_server: Callable[..., Any],
) -> None:
    async with make_live_server(**FAST) as server:
        _, owner = await server.login_new_user()
        _, other = await server.login_new_user()
        task = await submit(server, owner, webhook={"url": "http://127.0.0.1:9/hook"})
        path = f"/api/v1/tasks/{task['id']}/webhooks"
        async with server.http() as anonymous:
            unauthenticated = await anonymous.get(path)
        async with server.http(other) as http:
            hidden = await http.get(path)
            missing = await http.get(f"/api/v1/tasks/{UUID(int=7)}/webhooks")
        async with server.http(owner) as http:
            mine = await http.get(path)
    assert unauthenticated.status_code == 401
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"]["code"] == "not_found"
    assert mine.status_code == 200
    assert mine.json()["items"] == []  # still running
