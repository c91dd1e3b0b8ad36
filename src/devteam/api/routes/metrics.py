"""Prometheus metrics of this process."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from devteam.api.deps import SettingsDep
from devteam.api.docs import error_responses
from devteam.domain.errors import ErrorCode, Unauthorized

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format); a bearer token when DEVTEAM_METRICS_TOKEN is set",
    response_class=Response,
    responses={
        200: {
            "description": "The metrics of this process, in Prometheus's text format",
            "content": {
                "text/plain": {
                    "schema": {"type": "string"},
                    "example": 'devteam_http_requests_total{method="GET",route="/health/live",'
                    'status="200"} 3.0\n',
                }
            },
        },
        **error_responses(ErrorCode.UNAUTHORIZED),
    },
)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    token = settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("a valid metrics token is required")
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
