"""Errors on admin pages are pages: sign-in redirects, a readable 403/404, never a JSON body.

htmx requests get the same status with an `HX-Redirect` (to sign in) or a small fragment, so a
partial update never swaps an error page into the middle of a table.
"""

from __future__ import annotations

import math
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import escape

from llm_manager.errors import UnauthenticatedError
from llm_manager.server.admin._pages import Pages
from llm_manager.server.admin._session import LOGIN_PATH


def is_admin_page(request: Request) -> bool:
    path = request.url.path
    return path == "/admin" or (path.startswith("/admin/") and not path.startswith("/admin/static/"))


def error_page(request: Request, status: int, message: str, error: Exception | None = None) -> Response:
    if isinstance(error, UnauthenticatedError) and request.url.path != LOGIN_PATH:
        target = f"{LOGIN_PATH}?next={quote(request.url.path)}"
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        if request.method == "GET":
            return RedirectResponse(target, status_code=303)
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if status == 429 and retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    pages: Pages = request.app.state.pages
    if request.headers.get("hx-request"):
        return HTMLResponse(
            f'<p class="error" role="alert">{escape(message)}</p>', status_code=status, headers=headers
        )
    response = pages.render(request, "error.html", {"status": status, "message": message}, status_code=status)
    response.headers.update(headers)
    return response
