"""A second way in for bucket notifications: an HTTP endpoint for stores that deliver them as
webhooks (MinIO's webhook target, other S3-compatible servers).

``POST /v1/events`` takes an S3 event body (MinIO's ``{"EventName", "Key", "Records"}`` or the
access format), checks the shared secret, checks that the body is S3 records, and appends it to
the same Redis list MinIO's Redis target fills, so it takes the router's one reliable road.
It answers 204 only once the event is stored; anything else makes the sender deliver it again.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterator

import redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from transcribe_common import events, keys, logs
from transcribe_common.errors import InvalidInput

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024


def create_ingress(conn: redis.Redis, secret: str) -> Starlette:
    expected = secret.encode()

    def authorised(request: Request) -> bool:
        """``Authorization: Bearer <secret>``, the scheme included (MinIO's webhook target sends it so)."""
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)

    async def receive(request: Request) -> Response:
        if not request.headers.get("authorization"):
            return JSONResponse({"detail": "missing Authorization header"}, status_code=401)
        if not authorised(request):
            return JSONResponse({"detail": "wrong token"}, status_code=403)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"detail": f"event larger than {MAX_BODY} bytes"}, status_code=413)
        try:
            created = events.parse(body)
        except InvalidInput as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        try:
            if created:  # deletions and tag changes need no job; nothing to store
                conn.rpush(keys.EVENTS, body)
        except redis.RedisError as exc:
            log.warning("event not stored: %s", exc)
            return JSONResponse({"detail": "events list unavailable; deliver again"}, status_code=503)
        return Response(status_code=204)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/v1/events", receive, methods=["POST"]), Route("/healthz", health)])


@contextlib.contextmanager
def serve_in_background(app: Starlette, host: str, port: int) -> Iterator[uvicorn.Server]:
    """Run the ingress on a thread beside the router loop while the block runs (uvicorn leaves
    signals to the main thread); at its end the server stops, and its port is free again (for a
    router started again in the same process, ``embedded.light``)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    thread = logs.thread(server.run, "ingress")
    thread.start()
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(STOP_SECONDS)


STOP_SECONDS = 10.0  # for the ingress's requests in flight to end
