"""`GET /ui`: the web UI's page and its assets, under a strict Content-Security-Policy.

The page is one HTML document that loads `static/js/main.js` (native ES modules)
and `static/app.css`; everything else it needs comes from the REST API and the
WebSocket of the same origin. The client-side router uses the URL fragment
(`/ui#/tasks/…`), so the server has one page to serve and no fallback routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse

from devteam.domain.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
"""Nothing from elsewhere, no inline script or style, never framed."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Assets change with the service; a reload always gets the version it serves.
    "Cache-Control": "no-cache",
}
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
@router.get("/ui/")
async def page() -> FileResponse:
    return FileResponse(
        STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_HEADERS
    )


@router.get("/ui/assets/{name:path}")
async def asset(
    name: Annotated[str, PathParam(max_length=200, pattern=r"^[A-Za-z0-9_./-]+$")],
) -> FileResponse:
    path = (STATIC / name).resolve()
    media_type = _MEDIA_TYPES.get(path.suffix)
    # Only files of the static folder, of the kinds above: no `..`, no index.html here.
    if media_type is None or not path.is_relative_to(STATIC) or not path.is_file():
        raise NotFound(f"no UI asset {name!r}")
    return FileResponse(path, media_type=media_type, headers=_HEADERS)
