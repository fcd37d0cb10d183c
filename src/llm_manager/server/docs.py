"""Interactive API docs (Swagger UI) served from vendored files, because the product runs offline.

FastAPI's built-in `/docs` loads Swagger UI from a CDN, so the app disables it and uses this
router instead; the assets live in `static/docs/` (version and licence in its README).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIRECTORY = Path(__file__).parent / "static" / "docs"
STATIC_PATH = "/static/docs"

router = APIRouter()


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """The Swagger UI page for this app's OpenAPI schema, with every asset served locally.

    URLs carry the ASGI `root_path`, as FastAPI's own page does, so the page still works when a
    reverse proxy serves the app under a sub-path.
    """
    app: FastAPI = request.app
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    static = f"{root_path}{STATIC_PATH}"
    return get_swagger_ui_html(
        openapi_url=f"{root_path}{app.openapi_url or '/openapi.json'}",
        title=f"{app.title} — API docs",
        swagger_js_url=f"{static}/swagger-ui-bundle.js",
        swagger_css_url=f"{static}/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon-32x32.png",
        # Swagger UI would otherwise send the schema to validator.swagger.io for a badge.
        swagger_ui_parameters={"validatorUrl": None},
    )


def mount_static(app: FastAPI) -> None:
    """Serve the vendored Swagger UI assets the `/docs` page refers to."""
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIRECTORY), name="docs-static")
