"""The page (``GET /``): a workspace of the caller's jobs, each file dropped on it a job with a live
progress bar, and a finished job's transcript beside a player of its input. A static page
(``ingest_api/static``, no build step) that speaks the public API like any other client."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"
# The page runs no inline script and loads nothing from elsewhere, but for media: a URL job's
# recording plays from its URL (the server keeps no copy of it), and with an API key the job's
# input plays from a blob (a media element cannot send the key).
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: http: https:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

router = APIRouter(include_in_schema=False)
static_files = StaticFiles(directory=STATIC)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"})
