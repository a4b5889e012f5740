"""Security headers on every answer of the API: a baseline, and a Content-Security-Policy that fits
what the answer is.

- JSON, text, transcripts, event streams, media: nothing in them may run or load anything, nor be
  framed (``default-src 'none'; frame-ancestors 'none'; sandbox``).
- The page (``/``): its own scripts, styles and media only.
- ``/docs``: Swagger UI, whose page starts itself with an inline script.

A route that sets its own policy keeps it (``/v1/jobs/{id}/input``: ``media.INPUT_POLICY``).
Pure ASGI middleware, as ``service.Measure``: no task per request.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASELINE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
NOTHING = "default-src 'none'; frame-ancestors 'none'; sandbox"
PAGE = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def policy(path: str, content_type: str) -> str:
    """The Content-Security-Policy of an answer that set none itself."""
    if not content_type.startswith("text/html"):
        return NOTHING
    return DOCS if path.startswith("/docs") else PAGE


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASELINE.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", policy(scope["path"], headers.get("content-type", "")))
            await send(message)

        await self.app(scope, receive, sending)
