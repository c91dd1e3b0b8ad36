"""The OpenAPI document: summaries, response models, error responses and examples; /docs."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.conftest import REPO

PUBLIC = {
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/auth/providers",
    "/api/v1/auth/oidc/token",
    "/api/v1/auth/oidc/refresh",
}
"""API routes that take no access token."""
NO_CLIENT_ERRORS = {"/api/v1/auth/providers"}
"""API routes no request of a client's can make fail (they take nothing)."""


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def has_examples(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> bool:
    """The schema, its items or one of its model fields carries examples."""
    schema = resolve(spec, schema)
    if "examples" in schema or "example" in schema:
        return True
    if depth > 2:
        return False
    if schema.get("type") == "array":
        return has_examples(spec, schema["items"], depth + 1)
    return any(
        has_examples(spec, field, depth + 1)
        for field in schema.get("properties", {}).values()
        if "$ref" in field or "$ref" in field.get("items", {})
    )


def problems_of(spec: dict[str, Any], path: str, method: str, op: dict[str, Any]) -> list[str]:
    where = f"{method.upper()} {path}"
    found = [] if op.get("summary") else [f"{where}: no summary"]
    responses: dict[str, Any] = op["responses"]
    found += [f"{where}: {p}" for p in success_problems(spec, responses)]
    errors = [code for code in responses if code[0] in "45"]
    if (
        path.startswith("/api/")
        and path not in NO_CLIENT_ERRORS
        and not any(code.startswith("4") for code in errors)
    ):
        found.append(f"{where}: no error responses")
    for code in errors:
        content = responses[code].get("content", {}).get("application/json", {})
        if not ("examples" in content or has_examples(spec, content.get("schema", {}))):
            found.append(f"{where}: {code} has no example")
    if path.startswith("/api/") and path not in PUBLIC:
        if op.get("security") != [{"OAuth2": []}]:
            found.append(f"{where}: not marked as needing the OAuth2 token")
        if "401" not in responses:
            found.append(f"{where}: 401 not documented")
    return found


def success_problems(spec: dict[str, Any], responses: dict[str, Any]) -> list[str]:
    successes = [code for code in responses if code.startswith("2")]
    found = [] if successes else ["no success response"]
    for code in successes:
        if code == "204":
            continue
        contents = responses[code].get("content", {})
        # JSON everywhere, but for /metrics, which speaks Prometheus's text format, and the
        # Server-Sent Events stream.
        content = (
            contents.get("application/json")
            or contents.get("text/plain")
            or contents.get("text/event-stream")
        )
        if content is None or "schema" not in content:
            found.append(f"{code} has no response model")
        elif not (
            "example" in content or "examples" in content or has_examples(spec, content["schema"])
        ):
            found.append(f"{code} has no example")
    return found


async def test_every_route_is_documented(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (_, client):
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    problems = [
        problem
        for path, operations in spec["paths"].items()
        for method, op in operations.items()
        for problem in problems_of(spec, path, method, op)
    ]
    assert not problems, "\n".join(problems)
    for path in (
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/events",
        "/api/v1/tasks/{task_id}/events/stream",
        "/api/v1/tasks/{task_id}/cancel",
        "/api/v1/tasks/{task_id}/approve",
        "/api/v1/agents",
        "/api/v1/team-leader/rules",
        "/api/v1/team-leader/rules/reload",
    ):
        assert path in spec["paths"], path


async def test_submit_documents_both_answers_the_key_and_its_errors(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (_, client):
        spec = (await client.get("/openapi.json")).json()
    submit = spec["paths"]["/api/v1/tasks"]["post"]
    assert {"202", "200", "401", "403", "409", "413", "422", "429"} <= set(submit["responses"])
    assert [p["name"] for p in submit["parameters"]] == ["Idempotency-Key"]
    conflict = submit["responses"]["409"]["content"]["application/json"]["examples"]["conflict"]
    assert conflict["value"]["error"]["code"] == "conflict"
    request = resolve(spec, submit["requestBody"]["content"]["application/json"]["schema"])
    assert request["examples"][0]["task"]
    assert request["additionalProperties"] is False
    assert "WebSocket" in spec["info"]["description"]
    assert "docs/api.md" in spec["info"]["description"]
    assert "Server-Sent Events" in spec["info"]["description"]


async def test_docs_page_has_the_authorize_button(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (_, client):
        docs = await client.get("/docs")
        spec = (await client.get("/openapi.json")).json()
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "/openapi.json" in docs.text
    scheme = spec["components"]["securitySchemes"]["OAuth2"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/token"


def undocumented(schema: Any, where: str) -> list[str]:
    """Properties anywhere under `schema` (nested objects, items, unions) without a description."""
    found: list[str] = []
    if isinstance(schema, dict):
        for name, prop in schema.get("properties", {}).items():
            if not (isinstance(prop, dict) and prop.get("description")):
                found.append(f"{where}.{name}")
            found += undocumented(prop, f"{where}.{name}")
        for key in ("items", "additionalProperties"):
            found += undocumented(schema.get(key), f"{where}[]")
        for key in ("anyOf", "oneOf", "allOf"):
            for option in schema.get(key, []):
                found += undocumented(option, where)
    return found


async def test_every_field_has_a_description(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (_, client):
        spec = (await client.get("/openapi.json")).json()
    missing = [
        problem
        for name, schema in spec["components"]["schemas"].items()
        for problem in undocumented(schema, name)
    ]
    assert not missing, "\n".join(missing)


async def test_operation_ids_are_the_routes_names(make_auth_client: Callable[..., Any]) -> None:
    async with make_auth_client() as (_, client):
        spec = (await client.get("/openapi.json")).json()
    ids = {
        f"{method.upper()} {path}": op["operationId"]
        for path, operations in spec["paths"].items()
        for method, op in operations.items()
    }
    assert len(set(ids.values())) == len(ids), "operation ids are unique"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", op_id) for op_id in ids.values()), ids
    assert {
        "POST /api/v1/tasks": "submit_task",
        "GET /api/v1/tasks": "list_tasks",
        "GET /api/v1/tasks/{task_id}": "read_task",
        "GET /api/v1/tasks/{task_id}/events": "read_events",
        "GET /api/v1/tasks/{task_id}/events/stream": "stream_events",
        "GET /api/v1/tasks/{task_id}/webhooks": "list_webhook_deliveries",
        "POST /api/v1/tasks/{task_id}/cancel": "cancel_task",
        "POST /api/v1/tasks/{task_id}/approve": "approve_task",
        "POST /api/v1/auth/token": "login",
        "GET /api/v1/users/me": "read_me",
    }.items() <= ids.items()


async def test_the_docs_page_loads_nothing_from_elsewhere(
    make_auth_client: Callable[..., Any],
) -> None:
    async with make_auth_client() as (_, client):
        page = await client.get("/docs")
        redirect = await client.get("/docs/oauth2-redirect")
        references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        assets = {url: await client.get(url) for url in references}
        redoc = await client.get("/redoc")
    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    # Nothing but the service's own paths, and no validator badge calling out.
    assert not re.search(r"https?://", page.text), page.text
    assert '"validatorUrl": null' in page.text
    assert sorted(references) == [
        "/static/swagger/favicon-32x32.png",
        "/static/swagger/swagger-ui-bundle.js",
        "/static/swagger/swagger-ui.css",
    ]
    for url, asset in assets.items():
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    assert "javascript" in assets["/static/swagger/swagger-ui-bundle.js"].headers["content-type"]
    assert "SwaggerUIBundle" in assets["/static/swagger/swagger-ui-bundle.js"].text
    assert assets["/static/swagger/swagger-ui.css"].headers["content-type"].startswith("text/css")
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text
    assert redoc.status_code == 404  # ReDoc would load from a CDN


async def test_the_contract_in_the_repository_covers_every_route(
    make_auth_client: Callable[..., Any],
) -> None:
    contract = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    async with make_auth_client() as (_, client):
        spec = (await client.get("/openapi.json")).json()
    undescribed = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if f"{method.upper()} {path}" not in contract
        and f"{method.upper()} {re.sub(r'{[a-z_]+}', '{id}', path)}" not in contract
    ]
    assert not undescribed, undescribed
    # It stands on its own: no pointer to documents outside the repository.
    assert "DESIGN.md" not in contract
    assert "beside this file" not in contract
    assert "docs/api.md" in (REPO / "README.md").read_text(encoding="utf-8")
