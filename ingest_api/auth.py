"""Optional API keys: ``Authorization: Bearer <key>`` on every /v1 route when any key is set.

A missing key is 401 (with ``WWW-Authenticate: Bearer``), a wrong one 403. The given key is
compared with every configured key in constant time, so neither the answer's timing nor its
content says how close a guess came or which key it resembled.

Each key is a tenant: the jobs it submits are its own, and every route that names a job answers
404 to any other key (``may_see``). ``ADMIN_API_KEYS`` see every job. Inbox drops belong to no key:
to admins, and to ``INBOX_OWNER_KEY`` when it is set. Without keys there are no tenants.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingest_api.services import Services, ServicesDep
from ingest_api.settings import key_id

bearer = HTTPBearer(auto_error=False, description="An API key from API_KEYS or API_KEYS_FILE, when set.")
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity:
    """Who calls: ``id`` is a digest of the key (``anonymous`` when keys are off), the owner
    recorded on the jobs it submits."""

    id: str
    admin: bool = False

    @property
    def sees_all(self) -> bool:
        """No tenants (keys are off), or an operator."""
        return self.id == ANONYMOUS or self.admin

    @property
    def owner(self) -> str | None:
        return None if self.id == ANONYMOUS else self.id


def may_see(caller: Identity, owner: str | None, inbox_owner: str | None) -> bool:
    """Whether ``caller`` may know of a job owned by ``owner`` (None: an inbox drop)."""
    if caller.sees_all:
        return True
    return caller.id == (owner if owner is not None else inbox_owner)


async def authorize(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Identity:
    """The caller's identity. Async though it never waits: FastAPI runs a plain ``def``
    dependency on a worker thread, a hop per request."""
    keys = services.api_keys
    if not keys:
        return Identity(ANONYMOUS)
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "an API key is required: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    given = credentials.credentials.encode()
    matched = admin = False
    for key in keys:  # no early exit: every key is compared
        matched |= hmac.compare_digest(given, key.encode())
    for key in services.admin_keys:
        admin |= hmac.compare_digest(given, key.encode())
    if not matched and not admin:
        wrong_key(services, request.client.host if request.client else "?")
    return Identity(key_id(credentials.credentials), admin=admin)


def wrong_key(services: Services, address: str) -> NoReturn:
    """403, or 429 once ``address`` has given ``AUTH_FAILURES_MAX`` wrong keys this minute: guessing
    slows down, and a right key from the same address (another tenant behind the same NAT, the
    guesser's victim) is never refused."""
    if wait := services.auth_failures.refused_for(address):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many wrong API keys from this address; try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    services.auth_failures.failed(address)
    raise HTTPException(status.HTTP_403_FORBIDDEN, "the API key is not valid")


Caller = Annotated[Identity, Depends(authorize)]
