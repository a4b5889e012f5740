"""``transcribe-webhooks``: delivers the webhooks workers queue, signed, with retries."""
