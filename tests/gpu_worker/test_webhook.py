"""Webhooks reach a real receiver and verify with the standardwebhooks library."""

import base64

from standardwebhooks import Webhook

from gpu_worker.webhook import deliver
from tests.helpers import Receiver
from transcribe_common.models import FailedWebhook

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_signed_webhook_verifies(receiver: Receiver) -> None:
    payload = FailedWebhook(job_id="s" * 32, error="bad media", db_id=5)
    assert deliver(f"{receiver.url}/signed", payload, secret=SECRET, timeout=5, attempts=1)
    call = receiver.wait_for("s" * 32)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert Webhook(SECRET).verify(call["body"], headers) == {
        "job_id": "s" * 32,
        "status": "failed",
        "error": "bad media",
        "db_id": 5,
    }


def test_a_receiver_that_is_down_does_not_raise() -> None:
    payload = FailedWebhook(job_id="d" * 32, error="x")
    assert deliver("http://127.0.0.1:9/none", payload, secret="", timeout=1, attempts=2) is False
