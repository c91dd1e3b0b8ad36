"""GET /metrics: Prometheus text, bounded route labels, an optional bearer token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list[Any]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_http_requests_are_counted_by_route_template(make_client: Callable[..., Any]) -> None:
    async with make_client() as (_, client):
        await client.get("/health/live")
        await client.get("/api/v1/users/00000000-0000-0000-0000-000000000001")
        await client.get("/no/such/page/12345")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    routes = {s.labels["route"] for s in samples(response.text, "devteam_http_requests_total")}
    assert "/health/live" in routes
    assert "/api/v1/users/{user_id}" in routes
    assert "unmatched" in routes
    assert not any("12345" in r or "0000-0000" in r for r in routes)
    assert samples(response.text, "devteam_http_request_duration_seconds_count")
    assert samples(response.text, "devteam_build_info")


async def test_a_metrics_token_is_required_when_set(make_client: Callable[..., Any]) -> None:
    async with make_client(metrics_token="s3cret-metrics-token") as (_, client):
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await client.get(
            "/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"}
        )
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 401
    assert right.status_code == 200
