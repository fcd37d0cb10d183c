"""Static files under a content hash: `/admin/static/<hash>/<path>`, cached for a year.

An upgrade changes a file's hash and so its URL: browsers never keep stale CSS or JavaScript
(the system we replace did), and nothing needs a manual cache-busting version number.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from llm_manager.errors import NotFoundError

STATIC_DIR = Path(__file__).parent / "static"
_IMMUTABLE = "public, max-age=31536000, immutable"


class Assets:
    """The digest of every static file, read once at start-up."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._root = root.resolve()
        self._digests = {
            path.relative_to(self._root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for path in sorted(self._root.rglob("*"))
            if path.is_file()
        }

    def url(self, name: str) -> str:
        """The versioned URL of a static file; an unknown name is a programming error, loudly."""
        return f"/admin/static/{self._digests[name]}/{name}"

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)

        @router.get("/admin/static/{digest}/{name:path}")
        async def static_file(digest: str, name: str) -> Response:
            current = self._digests.get(name)
            if current is None:
                raise NotFoundError(f"no static file {name!r}")
            if digest != current:  # an old page asking for an old version: send it to the new one
                return RedirectResponse(self.url(name), status_code=307)
            media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return FileResponse(
                self._root / name, media_type=media_type, headers={"Cache-Control": _IMMUTABLE}
            )

        return router
