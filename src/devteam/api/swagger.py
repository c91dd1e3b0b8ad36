"""`/docs`: Swagger UI served from the service itself, so it works offline.

FastAPI's own page loads Swagger UI from a CDN; this one serves the files of the
npm package `swagger-ui-dist`, vendored in `static/swagger/`, from the same origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "swagger"
ASSETS_PATH = "/static/swagger"
DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"


def install_docs(app: FastAPI) -> None:
    """Serve the Swagger UI page, its OAuth2 redirect page and its assets."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS), name="swagger-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            # No badge that would send the document to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI operation id: its function's name (`submit_task`, `list_tasks`)."""
    return route.name
