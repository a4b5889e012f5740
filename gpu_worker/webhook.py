"""Posting a job's outcome to its callback URL.

When ``WEBHOOK_SECRET`` is set the POST is signed per the Standard Webhooks specification
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), so receivers can verify it with any
Standard Webhooks library. Delivery is retried a few times with backoff; a receiver that is still
down after that is logged, never allowed to fail the job, which is already recorded in the bucket.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime

import httpx
from pydantic import BaseModel
from standardwebhooks import Webhook

log = logging.getLogger(__name__)


def signed_headers(secret: str, body: str) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "transcribe-pipeline"}
    if not secret:
        return headers
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, now, body)
    return headers | {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def deliver(url: str, payload: BaseModel, *, secret: str, timeout: float, attempts: int) -> bool:
    """POST ``payload``; True once a receiver answered 2xx."""
    body = payload.model_dump_json()
    headers = signed_headers(secret, body)
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            outcome = str(exc) or type(exc).__name__
        else:
            if response.is_success:
                return True
            outcome = f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break
        log.warning("webhook to %s, attempt %d/%d: %s", url, attempt, attempts, outcome)
        if attempt < attempts:
            time.sleep(2 ** (attempt - 1))
    log.error("webhook to %s not delivered", url)
    return False
