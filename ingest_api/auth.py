"""Optional API keys: ``Authorization: Bearer <key>`` on every /v1 route when any key is set.

A missing key is 401 (with ``WWW-Authenticate: Bearer``), a wrong one 403. The given key is
compared with every configured key in constant time, so neither the answer's timing nor its
content says how close a guess came or which key it resembled.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingest_api.services import ServicesDep

bearer = HTTPBearer(auto_error=False, description="An API key from API_KEYS or API_KEYS_FILE, when set.")
ANONYMOUS = "anonymous"


async def authorize(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The caller's identity (a digest of its key; ``anonymous`` when keys are off). Async though it
    never waits: FastAPI runs a plain ``def`` dependency on a worker thread, a hop per request."""
    keys = services.api_keys
    if not keys:
        return ANONYMOUS
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an API key is required: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = credentials.credentials.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())  # no early exit: every key is compared
    if not matched:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the API key is not valid")
    return hashlib.sha256(given).hexdigest()[:16]


Caller = Annotated[str, Depends(authorize)]
